//! Files served from disk with byte ranges (RFC 9110 §14): recordings for seeking, downloads
//! for resuming. A strong `ETag`, when the file has one, answers `If-None-Match` (304) and
//! decides `If-Range`.
//!
//! Calls: error.

use std::path::PathBuf;

use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

/// How a file is answered besides its bytes.
pub struct ServedFile<'a> {
    pub content_type: &'a str,
    pub cache: &'static str,
    /// A strong validator, without its quotes (the content's hash).
    pub etag: Option<&'a str>,
    /// A `Content-Disposition` value.
    pub disposition: Option<String>,
}

/// Serves a file whole (200) or one byte range of it (206), streaming from disk; 304 when the
/// client's copy (`If-None-Match`) is this one.
pub async fn serve_ranged(
    path: PathBuf,
    served: ServedFile<'_>,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let etag = served.etag.map(|tag| format!("\"{tag}\""));
    if let Some(etag) = &etag {
        if none_match(headers, etag) {
            return Ok((
                StatusCode::NOT_MODIFIED,
                [
                    (header::ETAG, etag.clone()),
                    (header::CACHE_CONTROL, served.cache.to_owned()),
                ],
            )
                .into_response());
        }
    }
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
    // So is a range for another version of the file (`If-Range` not this one's strong tag).
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .filter(|_| range_applies(headers, etag.as_deref()))
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
        .header(header::CONTENT_TYPE, served.content_type)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CONTENT_LENGTH, length)
        .header(header::CACHE_CONTROL, served.cache);
    if let Some(etag) = etag {
        response = response.header(header::ETAG, etag);
    }
    if let Some(disposition) = served.disposition {
        response = response.header(header::CONTENT_DISPOSITION, disposition);
    }
    if let Ranged::Part { first, last } = range {
        response = response.header(
            header::CONTENT_RANGE,
            format!("bytes {first}-{last}/{size}"),
        );
    }
    response.body(body).map_err(|e| ApiError::internal(&e))
}

/// Whether `If-None-Match` names `etag` (quoted), or is `*` (weak comparison, RFC 9110 §13.1.2).
pub(super) fn none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

/// Whether a `Range` may be answered: there is no `If-Range`, or it is this file's strong tag
/// (a date or a weak tag never matches: the file has no date, and ranges need strong tags).
fn range_applies(headers: &HeaderMap, etag: Option<&str>) -> bool {
    match headers.get(header::IF_RANGE) {
        None => true,
        Some(value) => etag.is_some_and(|etag| value.as_bytes() == etag.as_bytes()),
    }
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
    fn validators_follow_rfc_9110() {
        let with = |name: header::HeaderName, value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(name, value.parse().unwrap());
            headers
        };
        let tag = "\"abc\"";
        assert!(none_match(&with(header::IF_NONE_MATCH, "\"abc\""), tag));
        assert!(none_match(
            &with(header::IF_NONE_MATCH, "\"x\", W/\"abc\""),
            tag
        ));
        assert!(none_match(&with(header::IF_NONE_MATCH, "*"), tag));
        assert!(!none_match(&with(header::IF_NONE_MATCH, "\"abcd\""), tag));
        assert!(!none_match(&HeaderMap::new(), tag));
        assert!(range_applies(&HeaderMap::new(), None));
        assert!(range_applies(&with(header::IF_RANGE, "\"abc\""), Some(tag)));
        assert!(!range_applies(
            &with(header::IF_RANGE, "W/\"abc\""),
            Some(tag)
        ));
        assert!(!range_applies(
            &with(header::IF_RANGE, "Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(tag)
        ));
        assert!(!range_applies(&with(header::IF_RANGE, "\"abc\""), None));
    }
}
