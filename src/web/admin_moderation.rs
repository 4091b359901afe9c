//! Moderation from the room page: deleting a danmaku of a live room (admin JSON API, and its
//! twin for the room page's script), the admin session as the room page sees it, and the chat
//! ban the room page gives.
//!
//! The `rm_admin` cookie is scoped to `/admin`, so the room page (`/rooms/…`) cannot show it;
//! its script asks `GET /admin/session.json` (the cookie goes along) and sends its actions to
//! `/admin/moderation/…` with the admin cookie and the page's CSRF token in `X-RM-CSRF`. The
//! JSON API under `/api/v1/admin` stays bearer-only.
//!
//! Thin: parses, checks the admin, calls `app.rooms` (through the bans API's own handler for a
//! ban), renders. Calls: app → rooms, admins; admin (reasons); auth, csrf, json, path, error.

use std::net::IpAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use crate::admin::{self, AdminError, SignedAdmin};
use crate::app::App;
use crate::model::{AuditAction, RoomId};

use super::admin_bans::{self, BanBody};
use super::auth::{cookie, AdminApi, ClientIp, ADMIN_COOKIE};
use super::csrf::{Csrf, API_HEADER};
use super::error::ApiError;
use super::json::ApiJson;
use super::path::ApiPath;

/// A script's request on an admin's behalf: the `rm_admin` cookie's admin, or 401
/// `admin_required` as JSON (never the login page's redirect, which a script cannot follow).
pub struct AdminCookie(pub SignedAdmin);

impl FromRequestParts<Arc<App>> for AdminCookie {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        let token = cookie(&parts.headers, ADMIN_COOKIE).ok_or(AdminError::AdminRequired)?;
        let admin = app
            .admins
            .authenticate(token)
            .await
            .map_err(|_| AdminError::AdminRequired)?;
        Ok(AdminCookie(admin))
    }
}

/// The CSRF token the script got from `/admin/session.json`, sent back in `X-RM-CSRF`.
fn check_csrf(csrf: &Csrf, headers: &HeaderMap) -> Result<(), ApiError> {
    let sent = headers
        .get(API_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    csrf.verify(sent).map_err(|refused| refused.0)
}

/// `GET /admin/session.json` → `{"name","csrf"}` for the admin of the `rm_admin` cookie;
/// 401 `admin_required` otherwise. Not cached: it names who is signed in.
pub async fn session(AdminCookie(admin): AdminCookie, csrf: Csrf) -> impl IntoResponse {
    (
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({ "name": admin.admin.name, "csrf": csrf.token })),
    )
}

#[derive(Deserialize)]
struct DeleteBody {
    #[serde(default)]
    reason: String,
}

/// The optional `{"reason"}` of a deletion: an empty body gives none.
fn deletion_reason(body: &[u8]) -> Result<String, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(String::new());
    }
    let parsed: DeleteBody = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_json",
            format!("the body is empty or {{\"reason\"}}: {e}"),
        )
    })?;
    Ok(admin::reason(&parsed.reason)?)
}

/// Deletes the danmaku for `admin`, with the audit entry naming the room and the danmaku (the
/// ledger adds an excerpt of its text).
async fn delete_danmaku(
    app: &App,
    admin: &SignedAdmin,
    ip: IpAddr,
    (room, id): (u64, u64),
    body: &[u8],
) -> Result<StatusCode, ApiError> {
    let reason = deletion_reason(body)?;
    let target = format!("room:{room} danmaku:{id}");
    let audit = admin.audit(AuditAction::DeleteDanmaku, target, &reason, ip);
    app.rooms.delete_danmaku(RoomId(room), id, audit).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /api/v1/admin/rooms/{room_id}/danmaku/{danmaku_id}` (body `{"reason"}` optional)
/// → 204 once every member was told (`danmaku_deleted`) and the ledger dropped it; 404
/// `room_not_live` or `danmaku_not_found`.
pub async fn delete_danmaku_api(
    State(app): State<Arc<App>>,
    AdminApi(admin): AdminApi,
    ClientIp(ip): ClientIp,
    ApiPath(ids): ApiPath<(u64, u64)>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    delete_danmaku(&app, &admin, ip, ids, &body).await
}

/// `POST /admin/moderation/rooms/{room_id}/danmaku/{danmaku_id}/delete`: the room page's twin
/// of [`delete_danmaku_api`], by the admin cookie with the CSRF token in `X-RM-CSRF`.
pub async fn delete_danmaku_page(
    State(app): State<Arc<App>>,
    AdminCookie(admin): AdminCookie,
    ClientIp(ip): ClientIp,
    csrf: Csrf,
    headers: HeaderMap,
    ApiPath(ids): ApiPath<(u64, u64)>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    check_csrf(&csrf, &headers)?;
    delete_danmaku(&app, &admin, ip, ids, &body).await
}

/// `POST /admin/moderation/users/{id}/bans` `{"scope","reason","until"?}` → 201: the room
/// page's twin of `POST /api/v1/admin/users/{id}/bans` (the same handler), by the admin cookie
/// with the CSRF token in `X-RM-CSRF`.
pub async fn add_ban_page(
    state: State<Arc<App>>,
    AdminCookie(admin): AdminCookie,
    ip: ClientIp,
    csrf: Csrf,
    headers: HeaderMap,
    id: ApiPath<u64>,
    body: ApiJson<BanBody>,
) -> Result<StatusCode, ApiError> {
    check_csrf(&csrf, &headers)?;
    admin_bans::add_ban(state, AdminApi(admin), ip, id, body).await
}
