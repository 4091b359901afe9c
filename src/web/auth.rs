//! Who is asking: session tokens from the `Authorization: Bearer` header or the session cookie,
//! the client's address, and the cookies that carry sessions and CSRF tokens.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::{AUTHORIZATION, COOKIE};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use axum::response::Redirect;

use crate::accounts::{AccountsError, SignedIn};
use crate::app::App;

use super::error::ApiError;

pub const SESSION_COOKIE: &str = "rm_session";

/// The value of cookie `name`, if the request carries it.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// The token of an `Authorization: Bearer TOKEN` header, if the request carries one.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// The session token a request presents: the bearer header wins over the cookie.
pub fn session_token(headers: &HeaderMap) -> Option<&str> {
    bearer_token(headers).or_else(|| cookie(headers, SESSION_COOKIE))
}

/// A `Set-Cookie` value: HttpOnly, SameSite, Path=/, Secure when the site is served over https.
pub fn set_cookie(app: &App, name: &str, value: &str, max_age: u64, same_site: &str) -> String {
    let secure = if app.config.server.public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    format!("{name}={value}; Max-Age={max_age}; Path=/; HttpOnly; SameSite={same_site}{secure}")
}

pub fn session_cookie(app: &App, token: &str, expires_at: u64) -> String {
    let max_age = expires_at.saturating_sub(crate::store::unix_now());
    set_cookie(app, SESSION_COOKIE, token, max_age, "Lax")
}

pub fn clear_session_cookie(app: &App) -> String {
    set_cookie(app, SESSION_COOKIE, "", 0, "Lax")
}

/// A request that must come from a signed-in user (registered or guest); otherwise 401.
pub struct Signed(pub SignedIn);

impl FromRequestParts<Arc<App>> for Signed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        let token = session_token(&parts.headers).ok_or(AccountsError::NotLoggedIn)?;
        Ok(Signed(app.accounts.authenticate(token).await?))
    }
}

/// For pages: the signed-in user if there is one; never rejects.
pub struct MaybeSigned(pub Option<SignedIn>);

impl FromRequestParts<Arc<App>> for MaybeSigned {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &Arc<App>,
    ) -> Result<Self, Self::Rejection> {
        let Some(token) = session_token(&parts.headers) else {
            return Ok(MaybeSigned(None));
        };
        Ok(MaybeSigned(app.accounts.authenticate(token).await.ok()))
    }
}

/// For pages that need a signed-in user: anyone else is sent to the login page.
pub struct PageSigned(pub SignedIn);

impl FromRequestParts<Arc<App>> for PageSigned {
    type Rejection = Redirect;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Redirect> {
        let MaybeSigned(who) = MaybeSigned::from_request_parts(parts, app)
            .await
            .unwrap_or_else(|never| match never {});
        who.map(PageSigned).ok_or_else(|| Redirect::to("/login"))
    }
}

/// The client's IP address, as the TCP connection shows it.
pub struct ClientIp(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::from([127, 0, 0, 1]), |c| c.0.ip());
        Ok(ClientIp(ip))
    }
}
