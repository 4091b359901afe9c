//! The rtmp backend's HTTP side: nginx's publish callbacks (`/hooks/rtmp/…`), the hosts' push
//! keys (`/api/v1/me/push`), the HLS files viewers play (`/hls/…`) and the recordings
//! (`/records/files/…`, with byte ranges for seeking).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use crate::app::App;
use crate::media::rtmp::{Publish, PublishNotice, PushView, RtmpMedia};
use crate::model::UserId;

use super::auth::{request_host, Signed};
use super::error::ApiError;
use super::path::ApiPath;
use super::ranged::{serve_ranged, ServedFile};

#[derive(Deserialize, Default)]
struct HookQuery {
    secret: Option<String>,
}

/// The rtmp backend, or 404 when another backend is configured.
fn rtmp(app: &App) -> Result<&Arc<RtmpMedia>, ApiError> {
    app.rtmp.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_rtmp",
            "this server's media backend is not rtmp",
        )
    })
}

/// A callback from nginx: it carries the hook secret (see `rtmp::hook_secret`), and
/// its form fields are parsed keeping the FIRST of each name — nginx writes its own fields
/// first and appends the publisher's raw query after them, so a publisher cannot override
/// `name` or `app` by repeating them.
pub struct HookCall {
    media: Arc<RtmpMedia>,
    fields: HashMap<String, String>,
}

impl HookCall {
    fn take(&mut self, key: &str) -> String {
        self.fields.remove(key).unwrap_or_default()
    }
}

impl FromRequest<Arc<App>> for HookCall {
    type Rejection = Response;

    async fn from_request(req: Request, app: &Arc<App>) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let query = Query::<HookQuery>::from_request_parts(&mut parts, app)
            .await
            .map(|q| q.0)
            .unwrap_or_default();
        let media = rtmp(app).map_err(IntoResponse::into_response)?.clone();
        // Only the secret counts: behind a reverse proxy every request comes from this machine.
        if !media.is_hook_secret(query.secret.as_deref().unwrap_or_default()) {
            return Err(StatusCode::FORBIDDEN.into_response());
        }
        let body = Bytes::from_request(Request::from_parts(parts, body), app)
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(HookCall {
            media,
            fields: first_fields(&body),
        })
    }
}

fn first_fields(body: &[u8]) -> HashMap<String, String> {
    let mut fields = HashMap::new();
    for (key, value) in form_urlencoded::parse(body) {
        fields
            .entry(key.into_owned())
            .or_insert_with(|| value.into_owned());
    }
    fields
}

pub async fn on_publish(
    State(app): State<Arc<App>>,
    mut hook: HookCall,
) -> Result<StatusCode, ApiError> {
    let publish = Publish {
        app: hook.take("app"),
        name: hook.take("name"),
        code: hook.take("code"),
        addr: hook.take("addr"),
        client: hook.take("clientid"),
    };
    let media = hook.media;
    let verdict = tokio::task::spawn_blocking(move || {
        let verdict = media.authorize_publish(&publish);
        (verdict, publish)
    })
    .await
    .map_err(|e| ApiError::internal(&e))?;
    let (verdict, publish) = verdict;
    let accepted = verdict.is_ok();
    let notice = match verdict {
        Ok(event) => PublishNotice::Accepted(event),
        Err(reason) => PublishNotice::Refused {
            stream: publish.name,
            app: publish.app,
            addr: publish.addr,
            reason,
        },
    };
    app.publish_notice(notice).await;
    Ok(if accepted {
        StatusCode::OK
    } else {
        StatusCode::FORBIDDEN
    })
}

pub async fn on_publish_done(State(app): State<Arc<App>>, mut hook: HookCall) -> StatusCode {
    let name = hook.take("name");
    let client = hook.take("clientid");
    if let Some(event) = hook.media.publish_done(&name, &client) {
        app.publish_notice(PublishNotice::Ended(event)).await;
    }
    StatusCode::OK
}

pub async fn on_record_done(mut hook: HookCall) -> StatusCode {
    let path = hook.take("path");
    let client = hook.take("clientid");
    if !path.is_empty() {
        hook.media.record_done(&path, &client);
    }
    StatusCode::OK
}

/// `GET /api/v1/me/push`: the host's push URL and OBS settings.
pub async fn my_push(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Signed(who): Signed,
) -> Result<Json<PushView>, ApiError> {
    let user = who.registered()?.id;
    Ok(Json(push_view(&app, &headers, user).await?))
}

/// The host's push credentials (created on first use), with the host the request reached this
/// server by; 404 `not_rtmp` under another backend.
pub(super) async fn push_view(
    app: &App,
    headers: &HeaderMap,
    user: UserId,
) -> Result<PushView, ApiError> {
    let media = rtmp(app)?.clone();
    let host = app.site.rtmp_host(request_host(headers));
    let view = tokio::task::spawn_blocking(move || {
        media.push_key(user).map(|k| media.push_view(&k, &host))
    })
    .await
    .map_err(|e| ApiError::internal(&e))??;
    Ok(view)
}

/// `POST /api/v1/me/push/rotate`: a new secret code; the old one stops working.
pub async fn rotate_push(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Signed(who): Signed,
) -> Result<Json<PushView>, ApiError> {
    let user = who.registered()?.id;
    let media = rtmp(&app)?.clone();
    let rotating = media.clone();
    let host = app.site.rtmp_host(request_host(&headers));
    let view = tokio::task::spawn_blocking(move || {
        rotating
            .rotate_push_key(user)
            .map(|k| rotating.push_view(&k, &host))
    })
    .await
    .map_err(|e| ApiError::internal(&e))??;
    if let Err(e) = media.drop_if_on_air(&view.live_id).await {
        tracing::warn!(error = %e, "cannot drop the push that used the old key");
    }
    Ok(Json(view))
}

/// `GET /hls/{app}/{name}/{file}`: a playlist or segment written by nginx.
pub async fn hls(
    State(app): State<Arc<App>>,
    ApiPath((nginx_app, name, file)): ApiPath<(String, String, String)>,
) -> Result<Response, ApiError> {
    let (path, content_type) = rtmp(&app)?
        .hls_path(&nginx_app, &name, &file)
        .ok_or_else(ApiError::not_found)?;
    let bytes = match tokio::fs::read(&path).await {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(ApiError::not_found()),
        Err(e) => return Err(ApiError::internal(&e)),
    };
    // Playlists change every fragment; segments never change.
    let cache = if content_type.ends_with("mpegurl") {
        "no-cache"
    } else {
        "public, max-age=60"
    };
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
        ],
        bytes,
    )
        .into_response())
}

/// `GET /records/files/{stream}/{file}`: a recording, with `Range` support for seeking, or its
/// thumbnail.
pub async fn record_file(
    State(app): State<Arc<App>>,
    ApiPath((stream, file)): ApiPath<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let path = rtmp(&app)?
        .record_path(&stream, &file)
        .ok_or_else(ApiError::not_found)?;
    let content_type = if file.ends_with(".jpg") {
        "image/jpeg"
    } else {
        "video/mp4"
    };
    let file = ServedFile {
        content_type,
        cache: "public, max-age=3600",
        etag: None,
        disposition: None,
    };
    serve_ranged(path, file, &headers).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_of_each_field_wins() {
        let fields = first_fields(b"app=live&name=h1&code=abc&name=evil&app=mix");
        assert_eq!(fields["name"], "h1");
        assert_eq!(fields["app"], "live");
        assert_eq!(fields["code"], "abc");
    }
}
