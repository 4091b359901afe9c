//! The admin's users: the list (`GET /api/v1/admin/users`) and a user's detail
//! (`GET /api/v1/admin/users/{id}`), bearer tokens of admin sessions only.
//!
//! Thin: parses the query (`crate::admin::users`), reads the store and recordings, renders.
//! Calls: admin's users, rooms (who is live), records; auth, error.

use std::collections::HashSet;
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::Json;
use serde::Serialize;
use serde_json::json;

use crate::admin::users::{self, UserDetail};
use crate::app::App;
use crate::model::{Ban, BanScope, LoginEvent, LoginKind, User, UserId, UserKind};
use crate::records::{Paging, MAX_PER_PAGE};

use super::auth::AdminApi;
use super::error::ApiError;
use super::path::ApiPath;
use super::records::Query;

#[derive(Serialize)]
struct BanView {
    scope: BanScope,
    reason: String,
    created_at: u64,
    /// Unix seconds; `null`: until lifted.
    until: Option<u64>,
}

impl From<Ban> for BanView {
    fn from(ban: Ban) -> Self {
        BanView {
            scope: ban.scope,
            reason: ban.reason,
            created_at: ban.created_at,
            until: ban.expires_at,
        }
    }
}

#[derive(Serialize)]
struct UserView {
    user_id: UserId,
    kind: UserKind,
    username: Option<String>,
    email: Option<String>,
    nickname: String,
    verified: bool,
    created_at: u64,
    last_login_at: Option<u64>,
}

impl From<&User> for UserView {
    fn from(user: &User) -> Self {
        UserView {
            user_id: user.id,
            kind: user.kind,
            username: user.username.clone(),
            email: user.email.clone(),
            nickname: user.nickname.clone(),
            verified: user.is_verified(),
            created_at: user.created_at,
            last_login_at: user.last_login_at,
        }
    }
}

#[derive(Serialize)]
struct LoginView {
    at: u64,
    kind: LoginKind,
    ip: Option<String>,
}

impl From<LoginEvent> for LoginView {
    fn from(event: LoginEvent) -> Self {
        LoginView {
            at: event.at,
            kind: event.kind,
            ip: event.ip,
        }
    }
}

/// `GET /api/v1/admin/users?q&filter&sort&page&per_page` → `{"users","total","page","per_page"}`.
pub async fn list(
    State(app): State<Arc<App>>,
    _: AdminApi,
    RawQuery(raw): RawQuery,
) -> Result<Json<serde_json::Value>, ApiError> {
    let query = Query::of(raw);
    let paging = Paging::parse(query.get("page"), query.get("per_page"))?;
    let live_hosts: HashSet<UserId> = app
        .rooms
        .live_rooms()
        .iter()
        .map(|room| UserId(room.host.user_id))
        .collect();
    let users_query = users::query(
        query.get("q"),
        query.get("filter"),
        query.get("sort"),
        paging,
        live_hosts,
    )?;
    let page = app.store.run(move |s| s.users_page(&users_query)).await?;
    let users: Vec<serde_json::Value> = page
        .users
        .into_iter()
        .map(|(user, bans)| {
            let mut view = json!(UserView::from(&user));
            view["bans"] = json!(bans.into_iter().map(BanView::from).collect::<Vec<_>>());
            view
        })
        .collect();
    Ok(Json(json!({
        "users": users,
        "total": page.total,
        "page": paging.page,
        "per_page": paging.per_page,
    })))
}

/// `GET /api/v1/admin/users/{id}`: the user, last login and its IP, room, recordings, every
/// ban and the latest logins.
pub async fn detail(
    State(app): State<Arc<App>>,
    _: AdminApi,
    ApiPath(id): ApiPath<u64>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let UserDetail {
        user,
        room,
        bans,
        logins,
    } = users::detail(&app.store, UserId(id)).await?;
    let all = Paging {
        page: 1,
        per_page: MAX_PER_PAGE,
    };
    let recordings = app.records.of_user(user.id, all).await?;
    let recordings: Vec<serde_json::Value> = recordings
        .records
        .into_iter()
        .map(|listed| {
            let record = listed.record;
            json!({
                "record_id": record.id,
                "title": record.title,
                "started_at": record.started_at,
                "duration_secs": record.duration_secs,
            })
        })
        .collect();
    Ok(Json(json!({
        "user": UserView::from(&user),
        "last_login_ip": user.last_login_ip,
        "room": room.map(|room| json!({"room_id": room.id, "name": room.name})),
        "recordings": recordings,
        "recordings_total": recordings.len(),
        "bans": bans.into_iter().map(BanView::from).collect::<Vec<_>>(),
        "logins": logins.into_iter().map(LoginView::from).collect::<Vec<_>>(),
    })))
}
