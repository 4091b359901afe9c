//! `/api/v1/records/{id}/watch…` and `/stats`: the players' views and heartbeats, and a
//! recording's statistics for its host. Thin: parse, check the signed-in user, call
//! `records::watch`.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::Json;
use serde::Serialize;

use super::auth::Signed;
use super::error::ApiError;
use super::json::ApiJson;
use super::path::ApiPath;
use super::records::Query;
use crate::app::App;
use crate::calendar::day_label;
use crate::model::{RecordId, UserId};
use crate::records::watch::ViewId;

#[derive(Serialize)]
pub struct Started {
    view_id: String,
}

/// `POST /api/v1/records/{id}/watch`: starts a view (any signed-in user, guests included).
pub async fn start(
    State(app): State<Arc<App>>,
    Signed(who): Signed,
    ApiPath(id): ApiPath<u64>,
) -> Result<Json<Started>, ApiError> {
    let view = app.watching.start(RecordId(id), who.user.id).await?;
    Ok(Json(Started { view_id: view.0 }))
}

#[derive(serde::Deserialize)]
pub struct Heartbeat {
    position_ms: u64,
}

#[derive(Serialize)]
pub struct Watched {
    watched_secs: u64,
}

/// `POST /api/v1/records/{id}/watch/{view_id}` `{"position_ms"}`: a heartbeat.
pub async fn heartbeat(
    State(app): State<Arc<App>>,
    Signed(who): Signed,
    ApiPath((id, view)): ApiPath<(u64, String)>,
    ApiJson(beat): ApiJson<Heartbeat>,
) -> Result<Json<Watched>, ApiError> {
    let watched_secs =
        app.watching
            .heartbeat(RecordId(id), &ViewId(view), who.user.id, beat.position_ms)?;
    Ok(Json(Watched { watched_secs }))
}

#[derive(Serialize)]
pub struct Viewer {
    user_id: u64,
    nickname: String,
    watched_secs: u64,
    views: u64,
    first_at: u64,
    last_at: u64,
}

#[derive(Serialize)]
pub struct Day {
    day: String,
    views: u64,
}

#[derive(Serialize)]
pub struct Stats {
    views: u64,
    unique_viewers: u64,
    watch_secs_total: u64,
    watch_secs_avg: u64,
    viewers: Vec<Viewer>,
    viewers_total: usize,
    views_per_day: Vec<Day>,
}

/// `GET /api/v1/records/{id}/stats`: the recording's statistics, for its host.
pub async fn stats(
    State(app): State<Arc<App>>,
    Signed(who): Signed,
    ApiPath(id): ApiPath<u64>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Stats>, ApiError> {
    let paging = Query::of(raw).paging()?;
    let stats = app.watching.stats(RecordId(id), who.user.id).await?;
    let viewers_total = stats.viewers.len();
    let shown: Vec<_> = stats
        .viewers
        .into_iter()
        .skip(paging.offset())
        .take(paging.per_page)
        .collect();
    let ids: Vec<UserId> = shown.iter().map(|v| v.user_id).collect();
    let names = app
        .store
        .run(move |s| {
            ids.into_iter()
                .map(|id| Ok(s.user(id)?.map(|u| u.nickname).unwrap_or_default()))
                .collect::<Result<Vec<String>, _>>()
        })
        .await?;
    let record = &stats.record;
    Ok(Json(Stats {
        views: record.views,
        unique_viewers: record.unique_viewers,
        watch_secs_total: record.watch_secs_total,
        watch_secs_avg: record.watch_ms_total / 1000 / record.views.max(1),
        viewers: shown
            .into_iter()
            .zip(names)
            .map(|(v, nickname)| Viewer {
                user_id: v.user_id.0,
                nickname,
                watched_secs: v.watched_ms / 1000,
                views: v.views,
                first_at: v.first_at,
                last_at: v.last_at,
            })
            .collect(),
        viewers_total,
        views_per_day: stats
            .days
            .into_iter()
            .map(|(day, views)| Day {
                day: day_label(day),
                views,
            })
            .collect(),
    }))
}
