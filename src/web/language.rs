//! The reader's language for a request, and the switch every page's footer links to.
//!
//! The `lang` cookie (set by the switch) wins; else `Accept-Language`; else English
//! (`crate::i18n::Lang::negotiate`). Pages take [`Lang`] as an extractor and hand it to their
//! [`Layout`](super::pages::Layout); error answers are put into it in `error.rs`.
//! Calls: i18n, auth (cookies, the session), accounts (a signed-in user's mail language).

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{FromRequestParts, State};
use axum::http::header::{ACCEPT_LANGUAGE, REFERER};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use axum::response::Response;

use crate::app::App;
use crate::i18n::{self, Lang};

use super::account_pages::see_other;
use super::auth::{cookie, request_host, set_cookie, MaybeSigned};
use super::path::ApiPath;

/// A year: the choice is a preference, not a session.
const COOKIE_MAX_AGE: u64 = 365 * 24 * 3600;

/// The language a request's reader gets.
pub fn of_request(headers: &HeaderMap) -> Lang {
    Lang::negotiate(
        cookie(headers, i18n::COOKIE),
        headers.get(ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()),
    )
}

impl<S: Send + Sync> FromRequestParts<S> for Lang {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(of_request(&parts.headers))
    }
}

/// `GET /lang/{tag}`: remembers the language in a cookie and goes back to the page the link was
/// on (a path on this site only, so the switch cannot send anyone elsewhere), or home.
/// An unknown tag clears the choice, leaving `Accept-Language` to decide. A signed-in user's
/// mail follows the switch too.
pub async fn switch(
    State(app): State<Arc<App>>,
    MaybeSigned(who): MaybeSigned,
    headers: HeaderMap,
    ApiPath(tag): ApiPath<String>,
) -> Response {
    let chosen = Lang::ALL.into_iter().find(|l| l.tag() == tag);
    if let (Some(lang), Some(who)) = (chosen, &who) {
        // The cookie is the switch's promise; a store that cannot keep the mail's language
        // now is logged, not shown as a failed switch.
        if let Err(e) = app.accounts.set_language(who, lang).await {
            tracing::warn!(user = %who.user.id, error = %e, "cannot keep the mail language");
        }
    }
    let cookie = match chosen {
        Some(lang) => set_cookie(&app, i18n::COOKIE, lang.tag(), COOKIE_MAX_AGE, "Lax"),
        None => set_cookie(&app, i18n::COOKIE, "", 0, "Lax"),
    };
    see_other(
        &back_to(&headers).unwrap_or_else(|| "/".to_owned()),
        Some(cookie),
    )
}

/// The path and query of the `Referer`, when it is a page of this site.
fn back_to(headers: &HeaderMap) -> Option<String> {
    let referer = headers.get(REFERER)?.to_str().ok()?;
    let host = request_host(headers)?;
    let rest = referer
        .strip_prefix("http://")
        .or_else(|| referer.strip_prefix("https://"))?;
    let after_host = rest.strip_prefix(host)?;
    // `/x` only: `//evil` or `\evil` would leave the site.
    let path = after_host.split('#').next().unwrap_or("");
    (path.starts_with('/') && !path.starts_with("//") && !path.contains('\\'))
        .then(|| path.to_owned())
}
