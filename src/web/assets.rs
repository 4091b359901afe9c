//! Static assets (CSS, icons, scripts) embedded in the binary from `assets/`, served under
//! `/assets/…` with their content type, a strong ETag and a cache lifetime; text assets gzipped
//! for browsers that take it (the room page's first load drops from ~440 KiB to ~140 KiB, most
//! of it hls.js), each compressed once, at its first request.
//!
//! Paths are looked up in the embedded table only: nothing here touches the file system, so
//! `..` and other path tricks simply find nothing.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;

use super::accepts_gzip;
use super::error::{respond, ApiError};
use super::hex;
use super::path::ApiPath;
use super::ranged::none_match;
use crate::gzip::{gzip, Compression};

#[derive(RustEmbed)]
#[folder = "assets/"]
struct Assets;

/// Browsers may reuse an asset for an hour, then revalidate it cheaply with its ETag.
const CACHE_CONTROL: &str = "public, max-age=3600";

/// Text assets smaller than this are sent as they are: gzip's header would eat the gain.
const GZIP_FROM_BYTES: usize = 1024;

/// The gzipped text assets, by path, made at their first request. The table holds at most one
/// entry per embedded file, so it cannot grow beyond the binary's own assets.
static GZIPPED: LazyLock<Mutex<HashMap<String, Arc<[u8]>>>> = LazyLock::new(Mutex::default);

pub async fn asset(ApiPath(path): ApiPath<String>, uri: Uri, headers: HeaderMap) -> Response {
    let Some(file) = Assets::get(&path) else {
        return respond(&uri, &headers, ApiError::not_found());
    };
    let mimetype = file.metadata.mimetype();
    let compressible = is_text(mimetype) && file.data.len() >= GZIP_FROM_BYTES;
    let gzip = compressible && accepts_gzip(&headers);
    // One ETag per representation, as strong ETags must differ between encodings.
    let hash = hex(&file.metadata.sha256_hash()[..16]);
    let etag = if gzip {
        format!("\"{hash}-gz\"")
    } else {
        format!("\"{hash}\"")
    };
    let etag_value =
        HeaderValue::from_str(&etag).expect("a quoted hex string is a valid header value");
    let cache = HeaderValue::from_static(CACHE_CONTROL);
    let vary = HeaderValue::from_static("accept-encoding");
    if none_match(&headers, &etag) {
        return (
            StatusCode::NOT_MODIFIED,
            [
                (header::ETAG, etag_value),
                (header::CACHE_CONTROL, cache),
                (header::VARY, vary),
            ],
        )
            .into_response();
    }
    let content_type = HeaderValue::from_str(mimetype)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let headers = [
        (header::CONTENT_TYPE, content_type),
        (header::ETAG, etag_value),
        (header::CACHE_CONTROL, cache),
        (header::VARY, vary),
    ];
    if gzip {
        let body = gzipped(&path, &file.data);
        let encoding = [(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"))];
        return (headers, encoding, axum::body::Bytes::from_owner(body)).into_response();
    }
    (headers, file.data).into_response()
}

fn is_text(mimetype: &str) -> bool {
    mimetype.starts_with("text/")
        || mimetype.ends_with("javascript")
        || mimetype.ends_with("json")
        || mimetype.ends_with("+xml")
}

/// The gzipped bytes of the asset `path`, compressed now if this is its first request (outside
/// the lock: two first requests at once both compress, and one result is kept).
fn gzipped(path: &str, data: &[u8]) -> Arc<[u8]> {
    let table = || {
        GZIPPED
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    };
    if let Some(body) = table().get(path) {
        return body.clone();
    }
    let body: Arc<[u8]> = gzip(data, Compression::default()).into();
    table().entry(path.to_owned()).or_insert(body).clone()
}
