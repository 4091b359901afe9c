//! The JSON API of accounts, profiles and the owner's room (`/api/v1/…`), and `/files/…`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::accounts::NewSession;
use crate::app::App;
use crate::files::{FilesError, ImageKind};
use crate::i18n::Lang;
use crate::model::{Room, RoomId, User, UserKind};

use super::accepts_gzip;
use super::auth::{
    clear_session_cookie, request_host, session_cookie, session_token, ClientIp, MaybeSigned,
    Signed,
};
use super::csrf::NotCrossSite;
use super::error::ApiError;
use super::json::ApiJson;
use super::path::ApiPath;

/// A user as the API shows it.
#[derive(Serialize)]
pub struct UserView {
    user_id: u64,
    kind: UserKind,
    username: Option<String>,
    nickname: String,
    email: Option<String>,
    verified: bool,
    avatar_url: Option<String>,
    room_id: Option<u64>,
    created_at: u64,
}

impl From<&User> for UserView {
    fn from(user: &User) -> Self {
        UserView {
            user_id: user.id.0,
            kind: user.kind,
            username: user.username.clone(),
            nickname: user.nickname.clone(),
            email: user.email.clone(),
            verified: user.is_verified(),
            avatar_url: user.avatar.as_deref().map(|a| ImageKind::Avatar.url(a)),
            room_id: user.room_id.map(|r| r.0),
            created_at: user.created_at,
        }
    }
}

#[derive(Serialize)]
pub struct RoomView {
    room_id: u64,
    owner_id: u64,
    name: String,
    description: String,
    cover_url: Option<String>,
}

impl From<&Room> for RoomView {
    fn from(room: &Room) -> Self {
        RoomView {
            room_id: room.id.0,
            owner_id: room.owner.0,
            name: room.name.clone(),
            description: room.description.clone(),
            cover_url: room.cover.as_deref().map(|c| ImageKind::Cover.url(c)),
        }
    }
}

#[derive(Deserialize)]
pub struct RegisterBody {
    username: String,
    password: String,
    email: String,
}

#[derive(Serialize)]
struct Registered {
    user_id: u64,
    username: Option<String>,
    email: Option<String>,
    verified: bool,
}

pub async fn register(
    State(app): State<Arc<App>>,
    lang: Lang,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    ApiJson(body): ApiJson<RegisterBody>,
) -> Result<impl IntoResponse, ApiError> {
    let link_base = app.site.link_base(request_host(&headers));
    let user = app
        .accounts
        .register(
            &body.username,
            &body.password,
            &body.email,
            ip,
            &link_base,
            lang,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(Registered {
            user_id: user.id.0,
            username: user.username,
            email: user.email,
            verified: false,
        }),
    ))
}

#[derive(Deserialize)]
pub struct ResendBody {
    username: String,
    email: String,
}

pub async fn resend(
    State(app): State<Arc<App>>,
    lang: Lang,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    ApiJson(body): ApiJson<ResendBody>,
) -> Result<impl IntoResponse, ApiError> {
    let link_base = app.site.link_base(request_host(&headers));
    app.accounts
        .resend_verification(&body.username, &body.email, ip, &link_base, lang)
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "status": "sent" })),
    ))
}

/// `login` is the documented field; `username` and `email` are accepted in its place.
#[derive(Deserialize)]
pub struct LoginBody {
    #[serde(alias = "username", alias = "email")]
    login: String,
    password: String,
}

#[derive(Serialize)]
struct SessionView {
    token: String,
    expires_at: u64,
    user: UserView,
}

/// The answer to a login or a guest creation: the token in JSON and as the session cookie.
fn session_response(app: &App, status: StatusCode, session: NewSession) -> Response {
    let cookie = session_cookie(app, &session.token, session.expires_at);
    let body = SessionView {
        user: UserView::from(&session.user),
        token: session.token,
        expires_at: session.expires_at,
    };
    (status, [(header::SET_COOKIE, cookie)], Json(body)).into_response()
}

pub async fn login(
    State(app): State<Arc<App>>,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<LoginBody>,
) -> Result<Response, ApiError> {
    let session = app.accounts.login(&body.login, &body.password, ip).await?;
    Ok(session_response(&app, StatusCode::OK, session))
}

pub async fn logout(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    if let Some(token) = session_token(&headers) {
        app.accounts.logout_token(token).await?;
    }
    Ok((
        StatusCode::NO_CONTENT,
        [(header::SET_COOKIE, clear_session_cookie(&app))],
    ))
}

/// `POST /api/v1/guest[?replace=true]`. A request that is signed in already is refused unless it
/// asks to replace its session: a page that wants to watch must not log its visitor out.
pub async fn guest(
    State(app): State<Arc<App>>,
    ClientIp(ip): ClientIp,
    _: NotCrossSite,
    MaybeSigned(who): MaybeSigned,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let replace = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .any(|(key, value)| key == "replace" && value == "true");
    if who.is_some() && !replace {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_signed_in",
            "this session is signed in already; to start a guest session in its place, \
             ask for POST /api/v1/guest?replace=true",
        ));
    }
    app.ip_bans.check(ip)?;
    let session = app.accounts.create_guest(ip).await?;
    Ok(session_response(&app, StatusCode::CREATED, session))
}

pub async fn me(Signed(who): Signed) -> Json<UserView> {
    Json(UserView::from(&who.user))
}

#[derive(Deserialize)]
pub struct PatchMe {
    nickname: Option<String>,
}

pub async fn patch_me(
    State(app): State<Arc<App>>,
    Signed(who): Signed,
    ApiJson(body): ApiJson<PatchMe>,
) -> Result<Json<UserView>, ApiError> {
    let user = match body.nickname {
        Some(nickname) => app.accounts.set_nickname(&who, &nickname).await?,
        None => who.registered()?.clone(),
    };
    Ok(Json(UserView::from(&user)))
}

/// Uploads are capped at `uploads.max_image_bytes` exactly, whatever limit let the body in.
fn check_upload_size(app: &App, bytes: &Bytes) -> Result<(), ApiError> {
    let limit = app.config.uploads.max_image_bytes;
    if bytes.len() > limit {
        return Err(ApiError::payload_too_large(limit as u64));
    }
    Ok(())
}

pub async fn put_avatar(
    State(app): State<Arc<App>>,
    Signed(who): Signed,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    who.registered()?;
    check_upload_size(&app, &body)?;
    let name = app.accounts.set_avatar(&who, body.to_vec()).await?;
    Ok(Json(
        serde_json::json!({ "avatar_url": ImageKind::Avatar.url(&name) }),
    ))
}

pub async fn my_room(
    State(app): State<Arc<App>>,
    Signed(who): Signed,
) -> Result<Json<RoomView>, ApiError> {
    let room = app.accounts.my_room(&who).await?;
    Ok(Json(RoomView::from(&room)))
}

#[derive(Deserialize)]
pub struct PatchRoom {
    name: Option<String>,
    description: Option<String>,
}

pub async fn patch_my_room(
    State(app): State<Arc<App>>,
    Signed(who): Signed,
    ApiJson(body): ApiJson<PatchRoom>,
) -> Result<Json<RoomView>, ApiError> {
    let room = app
        .accounts
        .update_my_room(&who, body.name.as_deref(), body.description.as_deref())
        .await?;
    app.rooms.room_updated(room.clone()).await;
    Ok(Json(RoomView::from(&room)))
}

pub async fn put_cover(
    State(app): State<Arc<App>>,
    Signed(who): Signed,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    who.registered()?;
    check_upload_size(&app, &body)?;
    let room = app.accounts.set_room_cover(&who, body.to_vec()).await?;
    let cover_url = room.cover.as_deref().map(|c| ImageKind::Cover.url(c));
    app.rooms.room_updated(room).await;
    Ok(Json(serde_json::json!({ "cover_url": cover_url })))
}

/// `GET /files/{folder}/{name}`: a stored image. Names never change content, so browsers may
/// keep them forever.
pub async fn file(
    State(app): State<Arc<App>>,
    ApiPath((folder, name)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    let kind = ImageKind::from_folder(&folder).ok_or_else(ApiError::not_found)?;
    let files = app.files.clone();
    let read = tokio::task::spawn_blocking(move || files.read(kind, &name))
        .await
        .map_err(|e| ApiError::internal(&e))?;
    match read {
        Ok((bytes, content_type)) => Ok((
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
                (
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("public, max-age=31536000, immutable"),
                ),
            ],
            bytes,
        )
            .into_response()),
        Err(FilesError::NotFound) => Err(ApiError::not_found()),
        Err(e) => Err(ApiError::internal(&e)),
    }
}

/// `GET /api/v1/rooms`: the rooms that are live now, gzipped for a client that takes it.
pub async fn rooms(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let listing = app.rooms.live_listing();
    let gzip = accepts_gzip(&headers);
    let mut response = (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::VARY, "accept-encoding"),
        ],
        if gzip {
            listing.gzip.clone()
        } else {
            listing.json.clone()
        },
    )
        .into_response();
    if gzip {
        response
            .headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    response
}

/// `GET /api/v1/rooms/{room_id}`: one room — its record, and its live state when open.
pub async fn room(
    State(app): State<Arc<App>>,
    ApiPath(room_id): ApiPath<u64>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = RoomId(room_id);
    let room = app.store.run(move |s| s.room(id)).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "room_not_found",
            "there is no such room",
        )
    })?;
    let live = app.rooms.live_room(id);
    let mut view =
        serde_json::to_value(RoomView::from(&room)).map_err(|e| ApiError::internal(&e))?;
    view["live"] = serde_json::to_value(live).map_err(|e| ApiError::internal(&e))?;
    Ok(Json(view))
}
