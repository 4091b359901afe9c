//! `ApiPath`: axum's path-parameter extractor with its rejections in our error shape (JSON for
//! programs, a page for people), instead of axum's plain-text answers.

use axum::extract::path::ErrorKind;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::Response;
use serde::de::DeserializeOwned;

use super::error::{respond, ApiError};

/// At most this much of a bad parameter is repeated in the error message.
const SHOWN_CHARS: usize = 60;

pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(ApiPath(value)),
            Err(rejection) => Err(respond(&parts.uri, &parts.headers, path_error(rejection))),
        }
    }
}

fn path_error(rejection: PathRejection) -> ApiError {
    let invalid = |detail: String| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_path",
            format!("the address is not valid: {detail}"),
        )
    };
    let PathRejection::FailedToDeserializePathParams(e) = rejection else {
        // A route whose pattern has no parameters for a handler that takes some: a bug of ours.
        return ApiError::internal(&rejection.body_text());
    };
    match e.into_kind() {
        ErrorKind::InvalidUtf8InPathParam { key } => {
            invalid(format!("the {key} part is not valid UTF-8 text"))
        }
        ErrorKind::ParseError {
            value,
            expected_type,
        }
        | ErrorKind::ParseErrorAtIndex {
            value,
            expected_type,
            ..
        }
        | ErrorKind::ParseErrorAtKey {
            value,
            expected_type,
            ..
        } => invalid(format!(
            "{:?} is not {}",
            shown(&value),
            described(expected_type)
        )),
        kind @ (ErrorKind::WrongNumberOfParameters { .. } | ErrorKind::UnsupportedType { .. }) => {
            // The handler's parameter type does not fit its route: a bug of ours.
            ApiError::internal(&kind)
        }
        other => invalid(shown(&other.to_string())),
    }
}

fn shown(value: &str) -> String {
    value.chars().take(SHOWN_CHARS).collect()
}

/// A type name as a person reads it.
fn described(type_name: &str) -> String {
    let integer = [
        "u8", "u16", "u32", "u64", "i8", "i16", "i32", "i64", "usize",
    ];
    if integer.contains(&type_name) {
        "a valid number".to_owned()
    } else {
        format!("a valid {type_name}")
    }
}
