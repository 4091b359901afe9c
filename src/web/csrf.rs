//! Cross-site request forgery: what keeps a page of another site from acting in a visitor's name.
//!
//! - **Page forms** carry a token bound to the browser's session: an HMAC keyed with the session
//!   token (64 random hex digits the browser holds in an HttpOnly cookie; on `/admin…` pages the
//!   admin session's, never the user's). Before there is a session, the key is a random
//!   pre-session cookie, `rm_csrf`. A cookie that another page on
//!   the same site plants does not help it: the token is not the cookie but an HMAC keyed with
//!   it, and once someone is signed in only their session token is the key.
//! - **The JSON API** ([`api_guard`], [`NotCrossSite`]): a request under `/api/` that changes
//!   something with the session cookie (not a bearer token), and a guest sign-up, must be JSON
//!   (`Content-Type: application/json`) or carry the [`API_HEADER`]. A form on another site can
//!   send neither, and a script there cannot send them without a CORS preflight, which this
//!   server never grants.
//!
//! Calls: auth (cookies, tokens), error.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::app::App;

use super::auth::{bearer_token, cookie, session_token, set_cookie, ADMIN_COOKIE, SESSION_COOKIE};
use super::error::{ApiError, PageError};
use super::hex;

/// The header by which a script of this site shows that its request is not a cross-site form.
pub const API_HEADER: &str = "x-rm-csrf";

const PRE_SESSION_COOKIE: &str = "rm_csrf";
/// A week: a form left open that long still submits.
const PRE_SESSION_MAX_AGE: u64 = 7 * 24 * 3600;
/// What the HMAC signs; a new version makes every outstanding form token invalid.
const PURPOSE: &[u8] = b"roommanager form token v1";

/// The CSRF token of the browser asking, for its forms and to check what they send back.
pub struct Csrf {
    pub token: String,
    /// A pre-session value to set as a cookie with the page: the browser showed neither a
    /// session nor a pre-session cookie, so nothing it sent can be checked.
    new_cookie: Option<String>,
}

impl FromRequestParts<Arc<App>> for Csrf {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &Arc<App>) -> Result<Self, Self::Rejection> {
        let admin = parts.uri.path().starts_with("/admin");
        Ok(Csrf::for_headers(&parts.headers, admin))
    }
}

impl Csrf {
    /// `admin`: for an admin page, whose session is the admin cookie's.
    fn for_headers(headers: &HeaderMap, admin: bool) -> Csrf {
        let session = if admin {
            cookie(headers, ADMIN_COOKIE)
        } else {
            session_token(headers)
        };
        // Only a value we could have issued is a key: an empty or short planted cookie would
        // make the HMAC easy to compute for whoever planted it.
        let key = session
            .filter(|t| looks_like_token(t))
            .or_else(|| cookie(headers, PRE_SESSION_COOKIE).filter(|t| looks_like_token(t)));
        match key {
            Some(key) => Csrf {
                token: bound_token(key),
                new_cookie: None,
            },
            None => {
                let mut bytes = [0u8; 32];
                getrandom::fill(&mut bytes)
                    .expect("the operating system's random source is always available");
                let pre_session = hex(&bytes);
                Csrf {
                    token: bound_token(&pre_session),
                    new_cookie: Some(pre_session),
                }
            }
        }
    }

    /// The `Set-Cookie` value to send with a page, if the browser needs a pre-session cookie.
    pub fn cookie(&self, app: &App) -> Option<String> {
        self.new_cookie.as_deref().map(|value| {
            set_cookie(
                app,
                PRE_SESSION_COOKIE,
                value,
                PRE_SESSION_MAX_AGE,
                "Strict",
            )
        })
    }

    /// Accepts a form only if it carries the token bound to this browser's session.
    pub fn verify(&self, submitted: &str) -> Result<(), PageError> {
        let same = self.new_cookie.is_none()
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

fn looks_like_token(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

fn bound_token(key: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.as_bytes());
    hex(ring::hmac::sign(&key, PURPOSE).as_ref())
}

/// Refuses a cookie-authenticated API request that changes something and that a page of another
/// site could have sent in the visitor's name (see the module header). Requests with a bearer
/// token are programs: a browser never adds that header to a cross-site request without asking
/// first. Requests without a session cookie act for nobody; the JSON endpoints among them
/// refuse other content types themselves.
pub async fn api_guard(req: Request, next: Next) -> Response {
    let changes_state = !matches!(
        *req.method(),
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    );
    let by_cookie = cookie(req.headers(), SESSION_COOKIE).is_some();
    if req.uri().path().starts_with("/api/") && changes_state && by_cookie {
        if let Err(refused) = not_cross_site(req.headers()) {
            return refused.into_response();
        }
    }
    next.run(req).await
}

/// For an API endpoint that starts a browser session without a JSON body (`POST
/// /api/v1/guest`): the same proof as [`api_guard`] asks, also without a session cookie, since a
/// cross-site form could otherwise replace the visitor's session (a `SameSite=Lax` cookie is not
/// sent with it, but a new one is taken from its answer).
pub struct NotCrossSite;

impl<S: Send + Sync> FromRequestParts<S> for NotCrossSite {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        not_cross_site(&parts.headers).map(|()| NotCrossSite)
    }
}

fn not_cross_site(headers: &HeaderMap) -> Result<(), ApiError> {
    if bearer_token(headers).is_some() || shows_same_site(headers) {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "csrf",
        "a browser request that changes something must be sent as JSON (Content-Type: \
         application/json) or carry the X-RM-CSRF header (a form on another site can do \
         neither); programs may use a bearer token instead",
    ))
}

/// JSON or the custom header: neither can come from a cross-site form or a CORS-simple request.
fn shows_same_site(headers: &HeaderMap) -> bool {
    let has_header = headers.get(API_HEADER).is_some_and(|v| !v.is_empty());
    // The media type as a browser parses it: whatever follows `;` is a parameter, so
    // `text/plain; application/json` is plain text (and needs no preflight).
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"));
    has_header || json
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_cookie(cookie: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            cookie.parse().expect("a valid header value"),
        );
        headers
    }

    #[test]
    fn the_token_is_an_hmac_of_the_session_not_the_cookie() {
        let session = "ab".repeat(32);
        let csrf = Csrf::for_headers(&with_cookie(&format!("rm_session={session}")), false);
        assert_ne!(csrf.token, session);
        assert_eq!(csrf.token.len(), 64);
        assert!(csrf.verify(&csrf.token).is_ok());
        // Another session, or the same value as a pre-session cookie, gives another token.
        let other_session = format!("rm_session={}", "cd".repeat(32));
        let other = Csrf::for_headers(&with_cookie(&other_session), false);
        assert!(other.verify(&csrf.token).is_err());
        // With a session, a pre-session cookie does not change the key.
        let both = Csrf::for_headers(
            &with_cookie(&format!(
                "rm_csrf={}; rm_session={session}",
                "cd".repeat(32)
            )),
            false,
        );
        assert_eq!(both.token, csrf.token);
    }

    #[test]
    fn admin_pages_key_forms_with_the_admin_session_never_the_users() {
        let user = "ab".repeat(32);
        let admin = "ef".repeat(32);
        let as_user = Csrf::for_headers(&with_cookie(&format!("rm_session={user}")), false);
        // A user's session alone gives an admin page no key: it needs a pre-session first.
        let user_on_admin_page =
            Csrf::for_headers(&with_cookie(&format!("rm_session={user}")), true);
        assert!(user_on_admin_page.verify(&as_user.token).is_err());
        let both = with_cookie(&format!("rm_session={user}; rm_admin={admin}"));
        let on_admin_page = Csrf::for_headers(&both, true);
        assert!(on_admin_page.verify(&on_admin_page.token).is_ok());
        assert_ne!(on_admin_page.token, as_user.token);
        assert_eq!(Csrf::for_headers(&both, false).token, as_user.token);
    }

    #[test]
    fn a_browser_without_cookies_gets_a_pre_session_and_cannot_submit_yet() {
        let csrf = Csrf::for_headers(&HeaderMap::new(), false);
        let pre_session = csrf.new_cookie.clone().expect("a new pre-session cookie");
        assert!(csrf.verify(&csrf.token).is_err());
        let next = Csrf::for_headers(&with_cookie(&format!("rm_csrf={pre_session}")), false);
        assert_eq!(next.token, csrf.token);
        assert!(next.verify(&csrf.token).is_ok());
    }

    #[test]
    fn the_json_media_type_is_read_as_a_browser_reads_it() {
        let content_type = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, value.parse().expect("valid"));
            shows_same_site(&headers)
        };
        assert!(content_type("application/json"));
        assert!(content_type("Application/JSON; charset=utf-8"));
        assert!(!content_type("text/plain; application/json"));
        assert!(!content_type("application/x-www-form-urlencoded"));
        assert!(!content_type("multipart/form-data; boundary=x"));
        assert!(!shows_same_site(&HeaderMap::new()));
    }
}
