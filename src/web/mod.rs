//! The HTTP layer: routes, extractors, middleware and pages, all assembled in [`router`].
//!
//! Thin by design: a handler parses the request, checks who is asking, calls the domain through
//! [`App`], and renders JSON or a page. Errors become responses only in `error.rs`.
//! Middleware here: body limits, the API's CSRF guard (`csrf.rs`), error answers in the
//! reader's language (`error.rs`, `language.rs`), the security headers every answer carries,
//! and request logging with metrics.
//! Calls: app (and through it every domain part). Never calls the store's internals.

mod account_pages;
mod admin;
mod admin_bans;
mod admin_ip_bans;
mod admin_mail;
mod admin_moderation;
mod admin_pages;
mod admin_records;
mod admin_rooms;
mod admin_stats;
mod admin_users;
mod api;
mod assets;
mod auth;
mod csrf;
mod download_pages;
mod downloads;
pub mod error;
mod json;
mod language;
mod media;
mod ops;
mod pages;
mod path;
mod publish;
mod ranged;
mod record_pages;
mod records;
mod watch;
mod ws;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Uri};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{delete, get, post, put};
use axum::{Extension, Router};

use crate::app::App;
use crate::connections::Slot;
use crate::metrics;
use error::ApiError;

/// Every route of RoomManager, with its middleware. Separate from serving, so it can be driven
/// without a socket.
pub fn router(app: Arc<App>) -> Router {
    let max_body = app.config.server.max_body_bytes;
    let image_limit = DefaultBodyLimit::max(upload_limit(&app));
    let policy = content_security_policy(&app.config.media.watch_origins);
    Router::new()
        .route(
            "/",
            get(pages::home).layer(Extension(Arc::new(pages::HomePages::default()))),
        )
        .route("/room/{room_id}", get(pages::room))
        .route("/studio", get(pages::studio))
        .route("/records", get(record_pages::records))
        .route("/records/{record_id}", get(record_pages::record))
        .route("/users/{user_id}", get(record_pages::user))
        .route(
            "/register",
            get(account_pages::register_page).post(account_pages::register_submit),
        )
        .route(
            "/login",
            get(account_pages::login_page).post(account_pages::login_submit),
        )
        .route(
            "/logout",
            get(account_pages::logout_page).post(account_pages::logout_submit),
        )
        .route("/guest", post(account_pages::guest_submit))
        .route("/verify", get(account_pages::verify_page))
        .route("/verify/resend", post(account_pages::resend_submit))
        .route("/me", get(account_pages::me_page))
        .route("/me/profile", post(account_pages::profile_submit))
        .route("/me/room", post(account_pages::room_submit))
        .route(
            "/me/avatar",
            post(account_pages::avatar_submit).layer(image_limit),
        )
        .route(
            "/me/room/cover",
            post(account_pages::cover_submit).layer(image_limit),
        )
        .route("/admin", get(admin_pages::dashboard))
        .route(
            "/admin/setup",
            get(admin_pages::setup_page).post(admin_pages::setup_submit),
        )
        .route(
            "/admin/login",
            get(admin_pages::login_page).post(admin_pages::login_submit),
        )
        .route("/admin/logout", post(admin_pages::logout_submit))
        .route("/api/v1/admin/login", post(admin::login))
        .route("/api/v1/admin/logout", post(admin::logout))
        .route("/api/v1/admin/dashboard", get(admin::dashboard))
        .route("/api/v1/admin/users/{id}/bans", post(admin_bans::add_ban))
        .route(
            "/api/v1/admin/users/{id}/bans/{scope}",
            delete(admin_bans::lift_ban),
        )
        .route("/api/v1/admin/rooms", get(admin_bans::rooms))
        .route(
            "/api/v1/admin/rooms/{id}/close",
            post(admin_bans::close_room),
        )
        .route(
            DOWNLOAD_UPLOAD_PATH,
            post(downloads::upload).layer(DefaultBodyLimit::disable()),
        )
        .route("/api/v1/admin/downloads/{id}", delete(downloads::delete))
        .route(
            DOWNLOAD_FORM_PATH,
            get(download_pages::admin_downloads)
                .post(download_pages::admin_upload)
                .layer(DefaultBodyLimit::disable()),
        )
        .route(
            "/admin/downloads/{id}/delete",
            post(download_pages::admin_delete),
        )
        .route("/api/v1/downloads", get(downloads::list))
        .route("/downloads", get(download_pages::downloads))
        .route("/downloads/obs-profile", get(downloads::obs_profile))
        .route("/downloads/{id}/{filename}", get(downloads::file))
        .route("/api/v1/admin/audit", get(admin_stats::audit_api))
        .route("/api/v1/admin/users", get(admin_users::list))
        .route(
            "/api/v1/admin/users/{id}",
            get(admin_users::detail).delete(admin_users::delete),
        )
        .route("/admin/users", get(admin_users::users_list_page))
        .route("/admin/users/{id}", get(admin_users::user_page))
        .route(
            "/api/v1/admin/users/{id}/verify",
            post(admin_users::email_api::<admin_users::MarkVerified>),
        )
        .route(
            "/api/v1/admin/users/{id}/resend-verification",
            post(admin_users::email_api::<admin_users::Resend>),
        )
        .route("/admin/users/{id}/delete", post(admin_users::delete_submit))
        .route(
            "/admin/users/{id}/verify",
            post(admin_users::email_submit::<admin_users::MarkVerified>),
        )
        .route(
            "/admin/users/{id}/resend-verification",
            post(admin_users::email_submit::<admin_users::Resend>),
        )
        .route("/api/v1/admin/stats/{section}", get(admin_stats::stats_api))
        .route("/admin/stats", get(admin_stats::stats_page))
        .route("/admin/stats/{section}/csv", get(admin_stats::stats_csv))
        .route("/admin/audit", get(admin_stats::audit_page))
        .route("/admin/audit/csv", get(admin_stats::audit_csv_page))
        .route(
            "/api/v1/admin/rooms/{room_id}/danmaku/{danmaku_id}",
            delete(admin_moderation::delete_danmaku_api),
        )
        .route("/admin/session.json", get(admin_moderation::session))
        .route(
            "/admin/moderation/rooms/{room_id}/danmaku/{danmaku_id}/delete",
            post(admin_moderation::delete_danmaku_page),
        )
        .route(
            "/admin/moderation/users/{id}/bans",
            post(admin_moderation::add_ban_page),
        )
        .route("/admin/users/{id}/bans", post(admin_users::ban_submit))
        .route(
            "/admin/users/{id}/bans/{scope}/lift",
            post(admin_users::lift_submit),
        )
        .route("/admin/rooms", get(admin_rooms::rooms_page))
        .route("/admin/rooms/{id}/close", post(admin_rooms::close_submit))
        .route("/admin/records", get(admin_records::records_page))
        .route(
            "/admin/records/{id}/delete",
            post(admin_records::delete_submit),
        )
        .route("/admin/mail", get(admin_mail::mail_page))
        .route("/admin/mail/test", post(admin_mail::test_submit))
        .route("/admin/mail/{id}", get(admin_mail::open_page))
        .route("/api/v1/admin/mail", get(admin_mail::mail_api))
        .route("/api/v1/admin/mail/test", post(admin_mail::test_api))
        .route("/api/v1/admin/mail/{id}", get(admin_mail::open_api))
        .route(
            "/api/v1/admin/ip-bans",
            get(admin_ip_bans::list).post(admin_ip_bans::add),
        )
        .route("/api/v1/admin/ip-bans/{id}", delete(admin_ip_bans::lift))
        .route(
            "/admin/ip-bans",
            get(admin_ip_bans::ip_bans_page).post(admin_ip_bans::add_submit),
        )
        .route("/admin/ip-bans/{id}/lift", post(admin_ip_bans::lift_submit))
        .route("/api/v1/register", post(api::register))
        .route("/api/v1/register/resend", post(api::resend))
        .route("/api/v1/login", post(api::login))
        .route("/api/v1/logout", post(api::logout))
        .route("/api/v1/guest", post(api::guest))
        .route("/api/v1/me", get(api::me).patch(api::patch_me))
        .route("/api/v1/me/avatar", put(api::put_avatar).layer(image_limit))
        .route(
            "/api/v1/me/room",
            get(api::my_room).patch(api::patch_my_room),
        )
        .route(
            "/api/v1/me/room/cover",
            put(api::put_cover).layer(image_limit),
        )
        .route("/files/{folder}/{name}", get(api::file))
        .route("/ws", get(ws::ws))
        .route("/ws/publish", get(publish::publish))
        .route("/hooks/rtmp/on_publish", post(media::on_publish))
        .route("/hooks/rtmp/on_publish_done", post(media::on_publish_done))
        .route("/hooks/rtmp/on_record_done", post(media::on_record_done))
        .route("/api/v1/me/push", get(media::my_push))
        .route("/api/v1/me/push/rotate", post(media::rotate_push))
        .route("/hls/{app}/{name}/{file}", get(media::hls))
        .route("/records/files/{stream}/{file}", get(media::record_file))
        .route("/api/v1/records", get(records::list))
        .route("/api/v1/records/search", get(records::search))
        .route(
            "/api/v1/records/{id}",
            get(records::get)
                .patch(records::patch)
                .delete(records::delete),
        )
        .route("/api/v1/records/{id}/danmaku", get(records::danmaku))
        .route(
            "/api/v1/records/{id}/comments",
            get(records::comments).post(records::post_comment),
        )
        .route(
            "/api/v1/records/{id}/comments/{comment_id}",
            delete(records::delete_comment),
        )
        .route("/api/v1/users/{id}/records", get(records::of_user))
        .route("/api/v1/me/records", get(records::mine))
        .route("/api/v1/records/{id}/watch", post(watch::start))
        .route(
            "/api/v1/records/{id}/watch/{view_id}",
            post(watch::heartbeat),
        )
        .route("/api/v1/records/{id}/stats", get(watch::stats))
        .route("/api/v1/rooms", get(api::rooms))
        .route("/api/v1/rooms/{room_id}", get(api::room))
        .route("/healthz", get(ops::healthz))
        .route("/metrics", get(ops::metrics))
        .route("/assets/{*path}", get(assets::asset))
        .route("/lang/{tag}", get(language::switch))
        // Only on routes: an address that does not exist is 404 whatever the request.
        .route_layer(middleware::from_fn(csrf::api_guard))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(
            app.clone(),
            refuse_large_bodies,
        ))
        .layer(middleware::from_fn_with_state(app.clone(), cap_proxied))
        .layer(middleware::from_fn(error::localize))
        .layer(middleware::from_fn_with_state(app.clone(), observe))
        .layer(middleware::map_response_with_state(
            policy,
            security_headers,
        ))
        .with_state(app)
}

/// The pages' Content-Security-Policy. Scripts, styles and images come from this server only,
/// never inline; video and its playlists may also come from `watch_origins` (another media
/// backend's distributor); hls.js plays through `blob:` URLs and runs its worker from one; the
/// WebSocket is this server's (`'self'` covers ws: and wss: to the same host). No page may be
/// framed, so no other site can dress it up and trick clicks out of a visitor.
fn content_security_policy(watch_origins: &[String]) -> HeaderValue {
    let extra: String = watch_origins.iter().map(|o| format!(" {o}")).collect();
    let policy = format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
         media-src 'self' blob:{extra}; connect-src 'self'{extra}; worker-src 'self' blob:; \
         object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
    );
    HeaderValue::from_str(&policy)
        .expect("config validation lets only plain origins into media.watch_origins")
}

/// Headers on every answer: the policy above, no MIME sniffing (an upload or a JSON answer is
/// never run as a script or page), and no full URLs in `Referer` to other sites.
async fn security_headers(State(policy): State<HeaderValue>, mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// Lower-case hex digits of `bytes`.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The answer to a connection over `server.max_connections_per_ip`, which the server gives
/// before the request reaches the router; the connection closes after it.
pub fn too_many_connections(app: &App, uri: &Uri, headers: &HeaderMap) -> Response {
    let error = ApiError::too_many_connections(app.connections.max());
    let mut response = error::respond(uri, headers, error);
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// The place a request forwarded by a trusted proxy holds for its client's address, for as long
/// as it is being answered and, for a WebSocket, for as long as the socket is open.
#[derive(Clone)]
pub struct ProxiedSlot {
    _held: Arc<Slot>,
}

/// The per-IP cap for clients behind a trusted proxy. The proxy's own TCP connections carry
/// many clients, so the server does not count them; instead each request the proxy forwards
/// counts for the client it names, until it is answered (a WebSocket: until it closes).
async fn cap_proxied(State(app): State<Arc<App>>, mut req: Request, next: Next) -> Response {
    if !app
        .config
        .server
        .is_trusted_proxy(auth::peer_ip(req.extensions()))
    {
        return next.run(req).await;
    }
    let client = auth::client_ip(&app, req.extensions(), req.headers());
    let Some(slot) = app.connections.try_open(client) else {
        app.metrics.connection_dropped("per_ip_cap");
        let error = ApiError::too_many_connections(app.connections.max());
        return error::respond(req.uri(), req.headers(), error);
    };
    req.extensions_mut().insert(ProxiedSlot {
        _held: Arc::new(slot),
    });
    next.run(req).await
}

/// The addresses that take image uploads, and so a larger body than the rest.
const UPLOAD_PATHS: [&str; 4] = [
    "/api/v1/me/avatar",
    "/api/v1/me/room/cover",
    "/me/avatar",
    "/me/room/cover",
];

/// The addresses that take a file for the downloads page, whose own cap is
/// `downloads.max_bytes`; their handlers stream the body to disk and count it themselves.
const DOWNLOAD_UPLOAD_PATH: &str = "/api/v1/admin/downloads";
const DOWNLOAD_FORM_PATH: &str = "/admin/downloads";

/// Room for the multipart framing (and the small fields beside it) around a file uploaded by a
/// page form.
const FORM_OVERHEAD: usize = 64 * 1024;

/// The body limit of the upload addresses: the image limit (plus form framing), and never less
/// than the general limit.
fn upload_limit(app: &App) -> usize {
    (app.config.uploads.max_image_bytes + FORM_OVERHEAD).max(app.config.server.max_body_bytes)
}

/// Refuses a body whose declared length is over the limit before reading any of it. Bodies
/// without a declared length are cut off by `DefaultBodyLimit` when a handler reads them.
async fn refuse_large_bodies(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let limit = if UPLOAD_PATHS.contains(&path) {
        upload_limit(&app) as u64
    } else if path == DOWNLOAD_UPLOAD_PATH {
        app.config.downloads.max_bytes
    } else if path == DOWNLOAD_FORM_PATH {
        app.config.downloads.max_bytes + FORM_OVERHEAD as u64
    } else {
        app.config.server.max_body_bytes as u64
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit) {
        return error::respond(req.uri(), req.headers(), ApiError::payload_too_large(limit));
    }
    next.run(req).await
}

/// Records every request in the metrics, labelled by its route pattern, and logs it at `debug`
/// (the access log: `[log] level = "info,roommanager::web=debug"`). Not at `info`: formatting
/// and writing one line per request cost a quarter of the server's time for its cheapest
/// answers (the home page and the rooms listing, 17.5 → 23.2 µs each in benches/http), and the
/// metrics already count every route and status.
async fn observe(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    // A label, not the raw method: a client may send 8 KB of invented method per request.
    let method = metrics::method_label(req.method().as_str());
    let logged = tracing::enabled!(tracing::Level::DEBUG).then(|| {
        let client = auth::client_ip(&app, req.extensions(), req.headers());
        (client, req.uri().path().to_owned())
    });
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let response = next.run(req).await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    app.metrics.record_http(method, &route, status, elapsed);
    if let Some((client, path)) = logged {
        tracing::debug!(
            %client,
            method,
            %path,
            status,
            micros = elapsed.as_micros() as u64,
            "request"
        );
    }
    response
}

/// Whether `Accept-Encoding` takes gzip: named with a weight above 0, or else `*` so.
pub(crate) fn accepts_gzip(headers: &HeaderMap) -> bool {
    let mut star = false;
    for coding in headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
    {
        let mut parts = coding.split(';').map(str::trim);
        let name = parts.next().unwrap_or_default();
        let wanted = !parts.any(|p| {
            p.strip_prefix("q=")
                .and_then(|q| q.parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        if name.eq_ignore_ascii_case("gzip") {
            return wanted;
        }
        star |= name == "*" && wanted;
    }
    star
}
