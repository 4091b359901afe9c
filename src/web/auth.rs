//! Who is asking: session tokens from the `Authorization: Bearer` header or the session cookie,
//! the client's address (behind `server.trusted_proxies`, from `X-Forwarded-For`), and the
//! cookies that carry sessions and CSRF tokens.
//!
//! Admins are apart: their pages (`/admin…`) read only the `rm_admin` cookie, which the browser
//! sends only there (`Path=/admin`); their JSON API (`/api/v1/admin…`) reads only the bearer
//! header. Each side looks its token up in its own table, so a user's token is no admin's and an
//! admin's is no user's.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::{AUTHORIZATION, COOKIE, HOST};
use axum::http::request::Parts;
use axum::http::{Extensions, HeaderMap, HeaderName};
use axum::response::Redirect;

use crate::accounts::{AccountsError, SignedIn};
use crate::admin::{AdminError, SignedAdmin};
use crate::app::App;

use super::error::ApiError;

pub const SESSION_COOKIE: &str = "rm_session";
/// The admin session's cookie, sent by browsers to `/admin…` pages only.
pub const ADMIN_COOKIE: &str = "rm_admin";
const ADMIN_COOKIE_PATH: &str = "/admin";

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

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

/// The name (and port) the client reached this server by: the `Host` header. Only
/// `crate::site` decides what it may be used for.
pub fn request_host(headers: &HeaderMap) -> Option<&str> {
    headers.get(HOST).and_then(|v| v.to_str().ok())
}

/// A `Set-Cookie` value: HttpOnly, SameSite, Path=/, Secure when the site is served over https.
pub fn set_cookie(app: &App, name: &str, value: &str, max_age: u64, same_site: &str) -> String {
    set_cookie_at(app, "/", name, value, max_age, same_site)
}

/// Like [`set_cookie`], for the addresses under `path` only.
fn set_cookie_at(
    app: &App,
    path: &str,
    name: &str,
    value: &str,
    max_age: u64,
    same_site: &str,
) -> String {
    let secure = if app.site.is_https() { "; Secure" } else { "" };
    format!(
        "{name}={value}; Max-Age={max_age}; Path={path}; HttpOnly; SameSite={same_site}{secure}"
    )
}

/// The admin session's cookie: for `/admin…` pages only, never sent with another site's request.
pub fn admin_cookie(app: &App, token: &str, expires_at: u64) -> String {
    let max_age = expires_at.saturating_sub(crate::store::unix_now());
    set_cookie_at(
        app,
        ADMIN_COOKIE_PATH,
        ADMIN_COOKIE,
        token,
        max_age,
        "Strict",
    )
}

pub fn clear_admin_cookie(app: &App) -> String {
    set_cookie_at(app, ADMIN_COOKIE_PATH, ADMIN_COOKIE, "", 0, "Strict")
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

/// A JSON request that must come from an admin: `Authorization: Bearer` with an admin session
/// token; otherwise 401 `admin_required`.
pub struct AdminApi(pub SignedAdmin);

impl FromRequestParts<Arc<App>> for AdminApi {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        let token = bearer_token(&parts.headers).ok_or(AdminError::AdminRequired)?;
        Ok(AdminApi(app.admins.authenticate(token).await?))
    }
}

/// For admin pages: the admin of the `rm_admin` cookie; anyone else is sent to the admin login.
pub struct AdminPage(pub SignedAdmin);

impl FromRequestParts<Arc<App>> for AdminPage {
    type Rejection = Redirect;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Redirect> {
        let to_login = || Redirect::to("/admin/login");
        let token = cookie(&parts.headers, ADMIN_COOKIE).ok_or_else(to_login)?;
        let admin = app
            .admins
            .authenticate(token)
            .await
            .map_err(|_| to_login())?;
        Ok(AdminPage(admin))
    }
}

/// For the user API's actions an admin may take too (deleting any record): an admin session's
/// bearer token, or else a signed-in user (401 as [`Signed`] when neither).
pub enum AdminOrUser {
    Admin(SignedAdmin),
    User(SignedIn),
}

impl FromRequestParts<Arc<App>> for AdminOrUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        if let Some(token) = bearer_token(&parts.headers) {
            if let Ok(admin) = app.admins.authenticate(token).await {
                return Ok(AdminOrUser::Admin(admin));
            }
        }
        let Signed(user) = Signed::from_request_parts(parts, app).await?;
        Ok(AdminOrUser::User(user))
    }
}

/// The client's IP address, from [`client_ip`].
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<Arc<App>> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &Arc<App>,
    ) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(client_ip(app, &parts.extensions, &parts.headers)))
    }
}

/// The address of the TCP peer (a browser, or a reverse proxy in front of RoomManager).
pub fn peer_ip(extensions: &Extensions) -> IpAddr {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([127, 0, 0, 1]), |c| c.0.ip().to_canonical())
}

/// Who is asking: the one answer to that question, for rate limits, the connection cap and the
/// logs. It is the TCP peer, unless the peer is a trusted proxy: then it is the right-most
/// `X-Forwarded-For` address that is not itself a trusted proxy. Each proxy appends the address
/// it got the request from, so everything left of the last untrusted hop may be made up by the
/// client. IPv4-mapped IPv6 addresses are taken as their IPv4 address.
pub fn client_ip(app: &App, extensions: &Extensions, headers: &HeaderMap) -> IpAddr {
    let peer = peer_ip(extensions);
    if !app.config.server.is_trusted_proxy(peer) {
        return peer;
    }
    let hops = headers
        .get_all(X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','));
    let mut client = peer;
    for hop in hops.rev() {
        let Some(ip) = parse_hop(hop) else {
            // A trusted proxy would not have written this: the hop before it is the last one
            // to go by.
            return client;
        };
        client = ip;
        if !app.config.server.is_trusted_proxy(ip) {
            break;
        }
    }
    client
}

/// One `X-Forwarded-For` entry: an address, maybe in brackets or with a port
/// (`203.0.113.7:4711`, `[2001:db8::1]:4711`) as some proxies write it.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    let bare = hop.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
    let ip = hop
        .parse::<IpAddr>()
        .ok()
        .or_else(|| bare?.parse::<IpAddr>().ok())
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))?;
    Some(ip.to_canonical())
}
