//! Static assets (CSS, icons, scripts) embedded in the binary from `assets/`, served under
//! `/assets/…` with their content type, a strong ETag and a cache lifetime.
//!
//! Paths are looked up in the embedded table only: nothing here touches the file system, so
//! `..` and other path tricks simply find nothing.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;

use super::error::{respond, ApiError};
use super::hex;
use super::path::ApiPath;

#[derive(RustEmbed)]
#[folder = "assets/"]
struct Assets;

/// Browsers may reuse an asset for an hour, then revalidate it cheaply with its ETag.
const CACHE_CONTROL: &str = "public, max-age=3600";

pub async fn asset(ApiPath(path): ApiPath<String>, uri: Uri, headers: HeaderMap) -> Response {
    let Some(file) = Assets::get(&path) else {
        return respond(&uri, &headers, ApiError::not_found());
    };
    let etag = format!("\"{}\"", hex(&file.metadata.sha256_hash()[..16]));
    let etag_value =
        HeaderValue::from_str(&etag).expect("a quoted hex string is a valid header value");
    let cache = HeaderValue::from_static(CACHE_CONTROL);
    let unchanged = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|tag| tag.trim() == etag || tag.trim() == "*")
        });
    if unchanged {
        return (
            StatusCode::NOT_MODIFIED,
            [(header::ETAG, etag_value), (header::CACHE_CONTROL, cache)],
        )
            .into_response();
    }
    let content_type = HeaderValue::from_str(file.metadata.mimetype())
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::ETAG, etag_value),
            (header::CACHE_CONTROL, cache),
        ],
        file.data,
    )
        .into_response()
}
