//! The downloads over HTTP: the admin's upload and delete (`/api/v1/admin/downloads…`), the
//! public list (`GET /api/v1/downloads`), the files themselves (`/downloads/{id}/{filename}`,
//! with ranges and a strong `ETag`), and the signed-in host's OBS profile
//! (`/downloads/obs-profile`).
//!
//! Thin: parses, checks who asks, calls `app.downloads`, renders. An upload's body is handed to
//! the domain piece by piece as it arrives; it is never gathered here.
//! Calls: app → downloads, accounts; auth, error, ranged, media (the push view).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::app::App;
use crate::downloads::{percent_encode, url_of, NewDownload};
use crate::model::{Download, DownloadId};

use super::auth::{session_token, AdminApi, ClientIp};
use super::error::{respond, ApiError};
use super::media::push_view;
use super::path::ApiPath;
use super::ranged::{serve_ranged, ServedFile};

/// A download as the API and the pages show it.
#[derive(Serialize)]
pub struct DownloadView {
    pub id: u64,
    pub title: String,
    pub version: String,
    pub description: String,
    pub filename: String,
    pub size: u64,
    pub sha256: String,
    pub url: String,
    pub created_at: u64,
}

impl From<Download> for DownloadView {
    fn from(d: Download) -> Self {
        DownloadView {
            url: url_of(&d),
            id: d.id.0,
            title: d.title,
            version: d.version,
            description: d.description,
            filename: d.filename,
            size: d.size,
            sha256: d.sha256,
            created_at: d.created_at,
        }
    }
}

/// `GET /api/v1/downloads` → `{"downloads":[…]}`, newest first.
pub async fn list(State(app): State<Arc<App>>) -> Result<Json<serde_json::Value>, ApiError> {
    let downloads: Vec<DownloadView> = app
        .downloads
        .list()
        .await?
        .into_iter()
        .map(DownloadView::from)
        .collect();
    Ok(Json(json!({ "downloads": downloads })))
}

#[derive(Deserialize)]
pub struct UploadQuery {
    filename: String,
    title: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    description: String,
}

/// `POST /api/v1/admin/downloads?filename=…&title=…[&version&description]`, the file as the
/// raw body → `201 {"id","url"}`.
pub async fn upload(
    State(app): State<Arc<App>>,
    AdminApi(admin): AdminApi,
    ClientIp(ip): ClientIp,
    uri: Uri,
    body: Body,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let Query(query) = Query::<UploadQuery>::try_from_uri(&uri)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text()))?;
    let new = NewDownload::check(
        &query.filename,
        &query.title,
        &query.version,
        &query.description,
    )?;
    let mut upload = app.downloads.begin(new).await?;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        upload.push(&chunk.map_err(interrupted)?).await?;
    }
    let download = upload.finish(&admin, ip).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "id": download.id.0, "url": url_of(&download) })),
    ))
}

/// A body that ended in an error: the client went away, or sent something that is not HTTP.
pub(super) fn interrupted(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "upload_interrupted",
        format!("the upload did not arrive whole: {e}"),
    )
}

/// `DELETE /api/v1/admin/downloads/{id}` → 204.
pub async fn delete(
    State(app): State<Arc<App>>,
    AdminApi(admin): AdminApi,
    ClientIp(ip): ClientIp,
    ApiPath(id): ApiPath<u64>,
) -> Result<StatusCode, ApiError> {
    app.downloads.delete(DownloadId(id), &admin, ip).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /downloads/{id}/{filename}`: the file, as an attachment under its name; 404 unless the
/// name is the one it is offered under.
pub async fn file(
    State(app): State<Arc<App>>,
    ApiPath((id, filename)): ApiPath<(u64, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (download, path) = app.downloads.file(DownloadId(id), &filename).await?;
    let served = ServedFile {
        content_type: &download.content_type,
        // The content under an id never changes (a new upload is a new id), but a deleted
        // download must not live on in caches: checked each time, answered 304 when unchanged.
        cache: "no-cache",
        etag: Some(&download.sha256),
        disposition: Some(attachment(&download.filename)),
    };
    serve_ranged(path, served, &headers).await
}

/// `Content-Disposition: attachment` under `name` (RFC 6266): `filename*` in UTF-8 (RFC 5987)
/// for clients that read it, and a plain ASCII `filename` for those that do not.
fn attachment(name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| match c {
            ' '..='~' if c != '"' && c != '\\' => c,
            _ => '_',
        })
        .collect();
    format!(
        "attachment; filename=\"{ascii}\"; filename*=UTF-8''{}",
        percent_encode(name)
    )
}

/// `GET /downloads/obs-profile`: OBS's `service.json` for the signed-in host (registered, with a
/// room; rtmp backend): the custom server and stream key of `GET /api/v1/me/push`.
pub async fn obs_profile(State(app): State<Arc<App>>, uri: Uri, headers: HeaderMap) -> Response {
    match obs_service(&app, &headers).await {
        Ok(service) => (
            [
                (header::CONTENT_TYPE, "application/json"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"service.json\"",
                ),
                // It holds the stream key.
                (header::CACHE_CONTROL, "no-store"),
            ],
            service,
        )
            .into_response(),
        Err(e) => respond(&uri, &headers, e),
    }
}

async fn obs_service(app: &App, headers: &HeaderMap) -> Result<String, ApiError> {
    let token = session_token(headers).ok_or(crate::accounts::AccountsError::NotLoggedIn)?;
    let who = app.accounts.authenticate(token).await?;
    let room = app.accounts.my_room(&who).await?;
    let view = push_view(app, headers, room.owner).await?;
    let service = json!({
        "type": "rtmp_custom",
        "settings": {
            "server": view.server,
            "key": view.stream_key,
            "use_auth": false,
            "bwtest": false,
        },
    });
    serde_json::to_string_pretty(&service).map_err(|e| ApiError::internal(&e))
}

#[cfg(test)]
mod tests {
    use super::attachment;

    #[test]
    fn names_go_into_content_disposition_encoded() {
        assert_eq!(
            attachment("说明 \"1\".pdf"),
            "attachment; filename=\"__ _1_.pdf\"; filename*=UTF-8''%E8%AF%B4%E6%98%8E%20%221%22.pdf"
        );
    }
}
