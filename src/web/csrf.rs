//! CSRF protection for the pages' forms: a double-submit token. The token lives in an HttpOnly,
//! SameSite=Strict cookie and is repeated in a hidden form field; a POST is accepted only when
//! both are present and equal. Another site can make a browser send the cookie (not with
//! SameSite=Strict, and never read it), but cannot know the value to put in the form.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;

use crate::app::App;

use super::auth::{cookie, set_cookie};
use super::error::{ApiError, PageError};

const CSRF_COOKIE: &str = "rm_csrf";
/// A week: a form left open that long still submits.
const CSRF_MAX_AGE: u64 = 7 * 24 * 3600;

pub struct Csrf {
    pub token: String,
    /// The request had no (valid) token cookie: a new one is set with the page.
    fresh: bool,
}

impl FromRequestParts<Arc<App>> for Csrf {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &Arc<App>) -> Result<Self, Self::Rejection> {
        let existing = cookie(&parts.headers, CSRF_COOKIE)
            .filter(|t| t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()));
        Ok(match existing {
            Some(token) => Csrf {
                token: token.to_owned(),
                fresh: false,
            },
            None => {
                let mut bytes = [0u8; 32];
                getrandom::fill(&mut bytes)
                    .expect("the operating system's random source is always available");
                Csrf {
                    token: bytes.iter().map(|b| format!("{b:02x}")).collect(),
                    fresh: true,
                }
            }
        })
    }
}

impl Csrf {
    /// The `Set-Cookie` value to send with a page, if the browser has no token yet.
    pub fn cookie(&self, app: &App) -> Option<String> {
        self.fresh
            .then(|| set_cookie(app, CSRF_COOKIE, &self.token, CSRF_MAX_AGE, "Strict"))
    }

    /// Accepts a form only if it repeats the browser's token.
    pub fn verify(&self, submitted: &str) -> Result<(), PageError> {
        let same = !self.fresh
            && submitted.len() == self.token.len()
            && submitted
                .bytes()
                .zip(self.token.bytes())
                .fold(0u8, |diff, (a, b)| diff | (a ^ b))
                == 0;
        if same {
            Ok(())
        } else {
            Err(PageError(ApiError::new(
                StatusCode::FORBIDDEN,
                "csrf",
                "This form has expired or did not come from this site. Go back, reload the \
                 page and send it again.",
            )))
        }
    }
}
