//! The JSON API of recordings (`/api/v1/records…`, `/api/v1/users/{id}/records`,
//! `/api/v1/me/records`): the catalogue, search, one record and its danmaku, rename, delete,
//! and comments.
//!
//! Thin: parses the query and body, checks who asks, calls `app.records`, renders JSON.
//! Calls: app → records; auth, json, path, error.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::admin::moderation::Acting;
use crate::app::App;
use crate::files::ImageKind;
use crate::model::{CommentId, RecordComment, RecordId, StoredDanmaku, UserId};
use crate::records::comments::CommentPage;
use crate::records::{parse_order, Paging, RecordDetail, RecordsError, MAX_DANMAKU_PAGE};
use crate::store::{CataloguePage, Listed};

use super::auth::{AdminOrUser, ClientIp, Signed};
use super::error::ApiError;
use super::json::ApiJson;
use super::path::ApiPath;

/// The query string's parameters (the last of a repeated one counts).
pub(super) struct Query(HashMap<String, String>);

impl Query {
    pub(super) fn of(raw: Option<String>) -> Query {
        Query(
            form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
                .into_owned()
                .collect(),
        )
    }

    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    pub(super) fn paging(&self) -> Result<Paging, RecordsError> {
        Paging::parse(self.get("page"), self.get("per_page"))
    }
}

#[derive(Serialize)]
struct HostView {
    user_id: u64,
    nickname: String,
    avatar_url: Option<String>,
}

/// A record as the catalogue shows it.
#[derive(Serialize)]
struct RecordItem {
    id: u64,
    title: String,
    host: HostView,
    started_at: u64,
    duration_secs: u64,
    views: u64,
    thumbnail_url: Option<String>,
    url: String,
}

impl From<Listed> for RecordItem {
    fn from(Listed { record, host }: Listed) -> Self {
        RecordItem {
            id: record.id.0,
            title: record.title,
            host: HostView {
                user_id: record.host.0,
                nickname: host
                    .as_ref()
                    .map(|h| h.nickname.clone())
                    .unwrap_or_default(),
                avatar_url: host
                    .and_then(|h| h.avatar)
                    .map(|a| ImageKind::Avatar.url(&a)),
            },
            started_at: record.started_at,
            duration_secs: record.duration_secs,
            views: record.views,
            thumbnail_url: record.thumbnail_url,
            url: record.url,
        }
    }
}

#[derive(Serialize)]
pub struct RecordList {
    records: Vec<RecordItem>,
    total: u64,
}

impl From<CataloguePage> for RecordList {
    fn from(page: CataloguePage) -> Self {
        RecordList {
            records: page.records.into_iter().map(RecordItem::from).collect(),
            total: page.total,
        }
    }
}

/// One record: the catalogue's fields and what its page shows besides.
#[derive(Serialize)]
pub struct RecordView {
    #[serde(flatten)]
    item: RecordItem,
    room_id: u64,
    comments_count: u64,
    watch_secs_total: u64,
    unique_viewers: u64,
    danmaku_count: u64,
}

impl From<RecordDetail> for RecordView {
    fn from(detail: RecordDetail) -> Self {
        let record = &detail.listed.record;
        RecordView {
            room_id: record.room.0,
            comments_count: record.comments_count,
            watch_secs_total: record.watch_secs_total,
            unique_viewers: record.unique_viewers,
            danmaku_count: detail.danmaku_count,
            item: RecordItem::from(detail.listed),
        }
    }
}

/// `GET /api/v1/records[?page&per_page&sort&host]`.
pub async fn list(
    State(app): State<Arc<App>>,
    RawQuery(raw): RawQuery,
) -> Result<Json<RecordList>, ApiError> {
    let query = Query::of(raw);
    let paging = query.paging()?;
    let order = parse_order(query.get("sort"))?;
    let host = match query.get("host") {
        None => None,
        Some(value) => Some(UserId(value.trim().parse().map_err(|_| {
            RecordsError::InvalidQuery(format!("`host` is a user id; {value:?} is not"))
        })?)),
    };
    let page = app.records.list(order, host, paging).await?;
    Ok(Json(page.into()))
}

/// `GET /api/v1/records/search?q=…[&page&per_page&sort]`.
pub async fn search(
    State(app): State<Arc<App>>,
    RawQuery(raw): RawQuery,
) -> Result<Json<RecordList>, ApiError> {
    let query = Query::of(raw);
    let paging = query.paging()?;
    let order = parse_order(query.get("sort"))?;
    let text = query.get("q").unwrap_or_default();
    let page = app.records.search(text, order, paging).await?;
    Ok(Json(page.into()))
}

/// `GET /api/v1/users/{user_id}/records[?page&per_page]`: one host's records, newest first.
pub async fn of_user(
    State(app): State<Arc<App>>,
    ApiPath(user): ApiPath<u64>,
    RawQuery(raw): RawQuery,
) -> Result<Json<RecordList>, ApiError> {
    let paging = Query::of(raw).paging()?;
    let page = app.records.of_user(UserId(user), paging).await?;
    Ok(Json(page.into()))
}

/// `GET /api/v1/me/records[?page&per_page&sort]`: the signed-in user's own records.
pub async fn mine(
    State(app): State<Arc<App>>,
    Signed(who): Signed,
    RawQuery(raw): RawQuery,
) -> Result<Json<RecordList>, ApiError> {
    let query = Query::of(raw);
    let paging = query.paging()?;
    let order = parse_order(query.get("sort"))?;
    let page = app.records.list(order, Some(who.user.id), paging).await?;
    Ok(Json(page.into()))
}

/// `GET /api/v1/records/{id}`.
pub async fn get(
    State(app): State<Arc<App>>,
    ApiPath(id): ApiPath<u64>,
) -> Result<Json<RecordView>, ApiError> {
    let detail = app.records.get(RecordId(id)).await?;
    Ok(Json(detail.into()))
}

#[derive(Deserialize)]
pub struct PatchRecord {
    title: String,
}

/// `PATCH /api/v1/records/{id}` `{"title"}`: its host renames it.
pub async fn patch(
    State(app): State<Arc<App>>,
    Signed(who): Signed,
    ApiPath(id): ApiPath<u64>,
    ApiJson(body): ApiJson<PatchRecord>,
) -> Result<Json<RecordView>, ApiError> {
    let id = RecordId(id);
    app.records.rename(&who.user, id, &body.title).await?;
    let detail = app.records.get(id).await?;
    Ok(Json(detail.into()))
}

/// `DELETE /api/v1/records/{id}`: its host deletes it.
/// `DELETE /api/v1/records/{id}[?reason=…]`: by its host, or by an admin (bearer token of an
/// admin session), whose delete is written to the audit log with the reason.
pub async fn delete(
    State(app): State<Arc<App>>,
    ClientIp(ip): ClientIp,
    who: AdminOrUser,
    ApiPath(id): ApiPath<u64>,
    RawQuery(raw): RawQuery,
) -> Result<StatusCode, ApiError> {
    match who {
        AdminOrUser::Admin(admin) => {
            let reason = Query::of(raw).get("reason").unwrap_or_default().to_owned();
            let by = Acting { admin: &admin, ip };
            app.moderation
                .delete_record(by, RecordId(id), &reason)
                .await?;
        }
        AdminOrUser::User(who) => app.records.delete_as_host(&who.user, RecordId(id)).await?,
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize)]
struct DanmakuView {
    offset_ms: u64,
    nickname: String,
    text: String,
    user_id: u64,
}

impl From<StoredDanmaku> for DanmakuView {
    fn from(d: StoredDanmaku) -> Self {
        DanmakuView {
            offset_ms: d.offset_ms,
            nickname: d.nickname,
            text: d.text,
            user_id: d.user_id.0,
        }
    }
}

/// `GET /api/v1/records/{id}/danmaku[?after&limit]`: the live session's danmaku, in order, a
/// page at a time; `next` is the `after` of the following page (`null` at the end).
pub async fn danmaku(
    State(app): State<Arc<App>>,
    ApiPath(id): ApiPath<u64>,
    RawQuery(raw): RawQuery,
) -> Result<Json<serde_json::Value>, ApiError> {
    let query = Query::of(raw);
    let after = match query.get("after") {
        None => None,
        Some(value) => Some(value.trim().parse::<u64>().map_err(|_| {
            RecordsError::InvalidQuery(format!(
                "`after` is the `next` of an earlier page; {value:?} is not"
            ))
        })?),
    };
    let limit = match query.get("limit") {
        None => MAX_DANMAKU_PAGE,
        Some(value) => value
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_DANMAKU_PAGE).contains(n))
            .ok_or_else(|| {
                RecordsError::InvalidQuery(format!(
                    "`limit` is a whole number from 1 to {MAX_DANMAKU_PAGE}; {value:?} is not"
                ))
            })?,
    };
    let (page, next) = app.records.danmaku(RecordId(id), after, limit).await?;
    let danmaku: Vec<DanmakuView> = page.into_iter().map(DanmakuView::from).collect();
    Ok(Json(
        serde_json::json!({ "danmaku": danmaku, "next": next }),
    ))
}

#[derive(Serialize)]
struct AuthorView {
    user_id: u64,
    nickname: String,
}

#[derive(Serialize)]
struct CommentView {
    id: u64,
    author: AuthorView,
    text: String,
    position_ms: Option<u64>,
    created_at: u64,
}

impl From<RecordComment> for CommentView {
    fn from(c: RecordComment) -> Self {
        CommentView {
            id: c.id.0,
            author: AuthorView {
                user_id: c.author.0,
                nickname: c.nickname,
            },
            text: c.text,
            position_ms: c.position_ms,
            created_at: c.created_at,
        }
    }
}

#[derive(Serialize)]
pub struct CommentList {
    comments: Vec<CommentView>,
    total: u64,
}

impl From<CommentPage> for CommentList {
    fn from(page: CommentPage) -> Self {
        CommentList {
            comments: page.comments.into_iter().map(CommentView::from).collect(),
            total: page.total,
        }
    }
}

/// `GET /api/v1/records/{id}/comments[?page&per_page]`: newest first.
pub async fn comments(
    State(app): State<Arc<App>>,
    ApiPath(id): ApiPath<u64>,
    RawQuery(raw): RawQuery,
) -> Result<Json<CommentList>, ApiError> {
    let paging = Query::of(raw).paging()?;
    let page = app.records.comments(RecordId(id), paging).await?;
    Ok(Json(page.into()))
}

#[derive(Deserialize)]
pub struct NewComment {
    text: String,
    position_ms: Option<i64>,
}

/// `POST /api/v1/records/{id}/comments` `{"text", "position_ms"?}`.
pub async fn post_comment(
    State(app): State<Arc<App>>,
    Signed(who): Signed,
    ApiPath(id): ApiPath<u64>,
    ApiJson(body): ApiJson<NewComment>,
) -> Result<impl IntoResponse, ApiError> {
    let comment = app
        .records
        .comment(&who.user, RecordId(id), &body.text, body.position_ms)
        .await?;
    Ok((StatusCode::CREATED, Json(CommentView::from(comment))))
}

/// `DELETE /api/v1/records/{id}/comments/{comment_id}`: by its author or the record's host.
pub async fn delete_comment(
    State(app): State<Arc<App>>,
    Signed(who): Signed,
    ApiPath((id, comment)): ApiPath<(u64, u64)>,
) -> Result<StatusCode, ApiError> {
    app.records
        .delete_comment(&who.user, RecordId(id), CommentId(comment))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
