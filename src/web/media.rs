//! The rtmp backend's HTTP side: nginx's publish callbacks (`/hooks/rtmp/…`), the hosts' push
//! keys (`/api/v1/me/push`), the HLS files viewers play (`/hls/…`) and the recordings
//! (`/records/files/…`, with byte ranges for seeking).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use crate::app::App;
use crate::media::rtmp::{Publish, PushView, RtmpMedia};

use super::auth::{request_host, Signed};
use super::error::ApiError;
use super::path::ApiPath;

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
    match verdict {
        (Ok(event), _) => {
            tracing::info!(room = %event.room, stream = %event.live_id, kind = event.kind.name(), "publish accepted");
            app.metrics.publish_decided("accepted");
            app.rooms
                .stream_state(event.room, event.live_id.0, true)
                .await;
            Ok(StatusCode::OK)
        }
        (Err(reason), publish) => {
            tracing::warn!(stream = %publish.name, app = %publish.app, addr = %publish.addr, reason, "publish refused");
            app.metrics.publish_decided(reason);
            Ok(StatusCode::FORBIDDEN)
        }
    }
}

pub async fn on_publish_done(State(app): State<Arc<App>>, mut hook: HookCall) -> StatusCode {
    let name = hook.take("name");
    let client = hook.take("clientid");
    if let Some(event) = hook.media.publish_done(&name, &client) {
        tracing::info!(room = %event.room, stream = %event.live_id, "publish ended");
        app.rooms
            .stream_state(event.room, event.live_id.0, false)
            .await;
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
    let media = rtmp(&app)?.clone();
    let host = app.site.rtmp_host(request_host(&headers));
    let view = tokio::task::spawn_blocking(move || {
        media.push_key(user).map(|k| media.push_view(&k, &host))
    })
    .await
    .map_err(|e| ApiError::internal(&e))??;
    Ok(Json(view))
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
    serve_ranged(path, content_type, &headers).await
}

/// Serves a file whole (200) or one byte range of it (206), streaming from disk.
async fn serve_ranged(
    path: PathBuf,
    content_type: &'static str,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let mut file = match tokio::fs::File::open(&path).await {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(ApiError::not_found()),
        Err(e) => return Err(ApiError::internal(&e)),
    };
    let size = file
        .metadata()
        .await
        .map_err(|e| ApiError::internal(&e))?
        .len();
    // A header that is not text cannot be a byte range: ignored like any other unusable one.
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map_or(Ranged::Whole, |v| parse_range(v, size));
    let (status, start, length) = match range {
        Ranged::Whole => (StatusCode::OK, 0, size),
        Ranged::Part { first, last } => (StatusCode::PARTIAL_CONTENT, first, last - first + 1),
        Ranged::Unsatisfiable => {
            return Ok((
                StatusCode::RANGE_NOT_SATISFIABLE,
                [(header::CONTENT_RANGE, format!("bytes */{size}"))],
            )
                .into_response())
        }
    };
    file.seek(std::io::SeekFrom::Start(start))
        .await
        .map_err(|e| ApiError::internal(&e))?;
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file.take(length)));
    let mut response = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CONTENT_LENGTH, length)
        .header(header::CACHE_CONTROL, "public, max-age=3600");
    if let Ranged::Part { first, last } = range {
        response = response.header(
            header::CONTENT_RANGE,
            format!("bytes {first}-{last}/{size}"),
        );
    }
    response.body(body).map_err(|e| ApiError::internal(&e))
}

/// What a `Range` header asks of a file, by RFC 9110 §14.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ranged {
    /// The whole file (200): the header is ignored because its unit is not `bytes`, it does not
    /// parse, or it asks for several ranges (answering those in one part is allowed and simpler
    /// than a multipart body).
    Whole,
    /// One range, first and last byte inclusive, clamped to the file (206).
    Part { first: u64, last: u64 },
    /// No range overlaps the file (416).
    Unsatisfiable,
}

fn parse_range(value: &str, size: u64) -> Ranged {
    let Some((unit, set)) = value.split_once('=') else {
        return Ranged::Whole;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return Ranged::Whole;
    }
    let specs: Option<Vec<Ranged>> = set
        .split(',')
        .map(str::trim)
        .filter(|spec| !spec.is_empty())
        .map(|spec| byte_range(spec, size))
        .collect();
    match specs.as_deref() {
        None | Some([]) => Ranged::Whole,
        Some([one]) => *one,
        Some(all) if all.iter().all(|r| *r == Ranged::Unsatisfiable) => Ranged::Unsatisfiable,
        Some(_) => Ranged::Whole,
    }
}

/// One `first-last`, `first-` or `-suffix`; `None` when it is not valid syntax (which makes the
/// whole header ignored). A `Whole` answer stands for a range that is valid but covers nothing
/// that can be sent as a part (a suffix of an empty file).
fn byte_range(spec: &str, size: u64) -> Option<Ranged> {
    let (first, last) = spec.split_once('-')?;
    // Digits only: `+5` or ` 5` are not numbers here, though `u64::from_str` takes some of them.
    // A number too big for u64 is still valid syntax: it is past the end of any file.
    let number = |text: &str| -> Option<u64> {
        (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
            .then(|| text.parse().unwrap_or(u64::MAX))
    };
    if first.is_empty() {
        let suffix = number(last)?;
        return Some(match (suffix, size) {
            (0, _) => Ranged::Unsatisfiable,
            (_, 0) => Ranged::Whole,
            _ => Ranged::Part {
                first: size - suffix.min(size),
                last: size - 1,
            },
        });
    }
    let first = number(first)?;
    let last = if last.is_empty() {
        u64::MAX
    } else {
        number(last)?
    };
    if last < first {
        return None;
    }
    Some(if first >= size {
        Ranged::Unsatisfiable
    } else {
        Ranged::Part {
            first,
            last: last.min(size - 1),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_rfc_9110() {
        use Ranged::{Part, Unsatisfiable, Whole};
        let cases = [
            ("bytes=0-99", Part { first: 0, last: 99 }),
            (
                "bytes=900-",
                Part {
                    first: 900,
                    last: 999,
                },
            ),
            (
                "bytes=-100",
                Part {
                    first: 900,
                    last: 999,
                },
            ),
            (
                "bytes=-5000",
                Part {
                    first: 0,
                    last: 999,
                },
            ),
            (
                "bytes=0-5000",
                Part {
                    first: 0,
                    last: 999,
                },
            ),
            ("Bytes = 5-5", Part { first: 5, last: 5 }),
            (
                "bytes=0-99999999999999999999999",
                Part {
                    first: 0,
                    last: 999,
                },
            ),
            ("bytes=1000-", Unsatisfiable),
            ("bytes=99999999999999999999999-", Unsatisfiable),
            ("bytes=-0", Unsatisfiable),
            ("bytes=1000-1001, 2000-", Unsatisfiable),
            ("bytes=5-1", Whole),
            ("items=0-1", Whole),
            ("bytes=", Whole),
            ("bytes", Whole),
            ("bytes=a-b", Whole),
            ("bytes=+1-2", Whole),
            ("bytes=1-2-3", Whole),
            ("bytes=0-1,5-6", Whole),
            ("bytes=0-1,x", Whole),
        ];
        for (header, expected) in cases {
            assert_eq!(parse_range(header, 1000), expected, "{header}");
        }
        assert_eq!(parse_range("bytes=0-0", 0), Unsatisfiable);
        assert_eq!(parse_range("bytes=-5", 0), Whole);
    }

    #[test]
    fn the_first_of_each_field_wins() {
        let fields = first_fields(b"app=live&name=h1&code=abc&name=evil&app=mix");
        assert_eq!(fields["name"], "h1");
        assert_eq!(fields["app"], "live");
        assert_eq!(fields["code"], "abc");
    }
}
