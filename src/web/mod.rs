//! The HTTP layer: routes, extractors, middleware and pages, all assembled in [`router`].
//!
//! Thin by design: a handler parses the request, checks who is asking, calls the domain through
//! [`App`], and renders JSON or a page. Errors become responses only in `error.rs`.
//! Calls: app (and through it every domain part). Never calls the store's internals.

mod assets;
pub mod error;
mod ops;
mod pages;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use axum::Router;

use crate::app::App;
use error::ApiError;

/// Every route of RoomManager, with its middleware. Separate from serving, so it can be driven
/// without a socket.
pub fn router(app: Arc<App>) -> Router {
    let max_body = app.config.server.max_body_bytes;
    Router::new()
        .route("/", get(pages::home))
        .route("/healthz", get(ops::healthz))
        .route("/metrics", get(ops::metrics))
        .route("/assets/{*path}", get(assets::asset))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(
            app.clone(),
            refuse_large_bodies,
        ))
        .layer(middleware::from_fn_with_state(app.clone(), observe))
        .with_state(app)
}

/// Refuses a body whose declared length is over the limit before reading any of it. Bodies
/// without a declared length are cut off by `DefaultBodyLimit` when a handler reads them.
async fn refuse_large_bodies(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let limit = app.config.server.max_body_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return error::respond(req.uri(), req.headers(), ApiError::payload_too_large(limit));
    }
    next.run(req).await
}

/// Logs every request and records it in the metrics, labelled by its route pattern.
async fn observe(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let response = next.run(req).await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    app.metrics
        .record_http(method.as_str(), &route, status, elapsed);
    tracing::info!(
        %method,
        %path,
        status,
        micros = elapsed.as_micros() as u64,
        "request"
    );
    response
}
