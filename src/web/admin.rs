//! The admin JSON API under `/api/v1/admin` (bearer tokens of admin sessions only): login,
//! logout, the dashboard's figures (the audit log and statistics are in `admin_stats.rs`). Also the dashboard's figures themselves, which
//! the admin pages show.
//!
//! Thin: parses, checks the admin (`AdminApi`), calls `app.admins` or reads the store, renders.
//! Calls: app → admins, rooms, store; admin's disk figures; auth, json, error, ops (media health).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::admin::disk::{self, Space};
use crate::app::App;
use crate::media::nginx::MediaPaths;
use crate::rooms::RoomSummary;
use crate::store::unix_now;

use super::auth::{AdminApi, ClientIp};
use super::error::ApiError;
use super::json::ApiJson;
use super::ops::MediaHealth;

#[derive(Deserialize)]
pub struct AdminLoginBody {
    name: String,
    password: String,
}

/// `POST /api/v1/admin/login` `{"name","password"}` → `{"token","expires_at"}`.
pub async fn login(
    State(app): State<Arc<App>>,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<AdminLoginBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let login = app.admins.login(&body.name, &body.password, ip).await?;
    Ok(Json(
        json!({ "token": login.token, "expires_at": login.expires_at }),
    ))
}

/// `POST /api/v1/admin/logout`: ends the bearer's admin session.
pub async fn logout(
    State(app): State<Arc<App>>,
    AdminApi(admin): AdminApi,
) -> Result<StatusCode, ApiError> {
    app.admins.logout(admin.session).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What the dashboard shows: the site right now.
#[derive(Serialize)]
pub struct Dashboard {
    pub live_rooms: Vec<RoomSummary>,
    /// Everyone in a live room now (hosts and co-hosts included).
    pub viewers_now: usize,
    /// Registrations since midnight UTC.
    pub registrations_today: u64,
    /// Bytes of this server's recordings (rtmp backend; another backend keeps them elsewhere).
    pub recordings_bytes: Option<u64>,
    /// The data dir's file system.
    pub disk: Option<Space>,
    pub media: MediaHealth,
}

impl Dashboard {
    pub async fn gather(app: &App) -> Result<Dashboard, ApiError> {
        let live_rooms = app.rooms.live_rooms();
        let viewers_now = app.rooms.viewers_now();
        let midnight = unix_now() / 86_400 * 86_400;
        let registrations_today = app
            .store
            .run(move |s| s.registrations_since(midnight))
            .await?;
        let data_dir = app.config.storage.data_dir.clone();
        let rtmp = app.rtmp.is_some();
        let (recordings_bytes, disk) = tokio::task::spawn_blocking(move || {
            let recordings = rtmp
                .then(|| MediaPaths::new(&data_dir).ok())
                .flatten()
                .map(|paths| disk::folder_bytes(&paths.records));
            let space = disk::space(&data_dir)
                .inspect_err(
                    |e| tracing::warn!(error = %e, "cannot read the data dir's free space"),
                )
                .ok();
            (recordings, space)
        })
        .await
        .map_err(|e| ApiError::internal(&e))?;
        Ok(Dashboard {
            live_rooms,
            viewers_now,
            registrations_today,
            recordings_bytes,
            disk,
            media: MediaHealth::of(app),
        })
    }
}

/// `GET /api/v1/admin/dashboard`.
pub async fn dashboard(
    State(app): State<Arc<App>>,
    _: AdminApi,
) -> Result<Json<Dashboard>, ApiError> {
    Ok(Json(Dashboard::gather(&app).await?))
}
