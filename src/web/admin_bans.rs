//! Bans and live rooms for admins, under `/api/v1/admin`: ban and unban a user (chat or
//! stream), list the live rooms, force-close one. Every action is written to the audit log with
//! the admin's reason and address.
//!
//! Thin: parses, checks the admin (`AdminApi`), calls `app.moderation` (`app.rooms` for the
//! list), renders. Calls: app → admin's moderation, rooms; auth, json, path, error.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::admin::moderation::Acting;
use crate::app::App;
use crate::model::{BanScope, RoomId, UserId};
use crate::rooms::protocol::{Person, RoomPhase};

use super::auth::{AdminApi, ClientIp};
use super::error::ApiError;
use super::json::ApiJson;
use super::path::ApiPath;
use super::records::Query;

#[derive(Deserialize)]
pub struct BanBody {
    scope: BanScope,
    reason: String,
    /// Unix seconds; absent for a ban until lifted.
    until: Option<u64>,
}

/// `POST /api/v1/admin/users/{id}/bans` `{"scope","reason","until"?}` → 201: applied at once
/// in every open room.
pub async fn add_ban(
    State(app): State<Arc<App>>,
    AdminApi(admin): AdminApi,
    ClientIp(ip): ClientIp,
    ApiPath(id): ApiPath<u64>,
    ApiJson(body): ApiJson<BanBody>,
) -> Result<StatusCode, ApiError> {
    let by = Acting { admin: &admin, ip };
    app.moderation
        .ban(by, UserId(id), body.scope, &body.reason, body.until)
        .await?;
    Ok(StatusCode::CREATED)
}

/// `DELETE /api/v1/admin/users/{id}/bans/{scope}[?reason=…]` → 204: lifts every ban of that
/// scope in force; members in open rooms get `unbanned`.
pub async fn lift_ban(
    State(app): State<Arc<App>>,
    AdminApi(admin): AdminApi,
    ClientIp(ip): ClientIp,
    ApiPath((id, scope)): ApiPath<(u64, String)>,
    RawQuery(raw): RawQuery,
) -> Result<StatusCode, ApiError> {
    let scope = ban_scope(&scope)?;
    let reason = Query::of(raw).get("reason").unwrap_or_default().to_owned();
    let by = Acting { admin: &admin, ip };
    app.moderation
        .lift_bans(by, UserId(id), scope, &reason)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A ban scope as a path names it.
pub(super) fn ban_scope(name: &str) -> Result<BanScope, ApiError> {
    match name {
        "chat" => Ok(BanScope::Chat),
        "stream" => Ok(BanScope::Stream),
        _ => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "the scope is `chat` or `stream`",
        )),
    }
}

/// A live room as the admin's list shows it.
#[derive(Serialize)]
pub struct LiveRoom {
    pub room_id: u64,
    pub name: String,
    pub title: Option<String>,
    pub host: Person,
    pub audience: usize,
    /// When the live session started (unix seconds).
    pub since: Option<u64>,
    pub co_streaming: bool,
}

/// The rooms live now, most watched first.
pub fn live_rooms(app: &App) -> Vec<LiveRoom> {
    app.rooms
        .live_rooms()
        .into_iter()
        .map(|r| LiveRoom {
            room_id: r.room_id,
            name: r.name,
            title: r.title,
            host: r.host,
            audience: r.audience,
            since: r.started_at,
            co_streaming: r.state == RoomPhase::CoStreaming,
        })
        .collect()
}

#[derive(Serialize)]
pub struct LiveRooms {
    rooms: Vec<LiveRoom>,
}

/// `GET /api/v1/admin/rooms` → `{"rooms":[{room_id,name,title,host,audience,since,co_streaming}]}`.
pub async fn rooms(State(app): State<Arc<App>>, _: AdminApi) -> Json<LiveRooms> {
    Json(LiveRooms {
        rooms: live_rooms(&app),
    })
}

#[derive(Deserialize)]
pub struct CloseBody {
    reason: String,
}

/// `POST /api/v1/admin/rooms/{id}/close` `{"reason"}` → 204: the room's members get
/// `room_closed` with the reason, a live session ends, the room leaves the directory.
pub async fn close_room(
    State(app): State<Arc<App>>,
    AdminApi(admin): AdminApi,
    ClientIp(ip): ClientIp,
    ApiPath(id): ApiPath<u64>,
    ApiJson(body): ApiJson<CloseBody>,
) -> Result<StatusCode, ApiError> {
    let by = Acting { admin: &admin, ip };
    app.moderation
        .close_room(by, RoomId(id), &body.reason)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
