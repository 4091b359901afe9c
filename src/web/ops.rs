//! Operations endpoints: `/healthz` for liveness checks and `/metrics` for Prometheus.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::app::App;
use crate::config::MediaBackend;
use crate::metrics::Gauges;

use super::auth::{bearer_token, ClientIp};
use super::error::ApiError;

/// `GET /healthz`: 200 when the store answers, 503 (same shape) when it does not.
pub async fn healthz(State(app): State<Arc<App>>) -> impl IntoResponse {
    let store = app.store.run(|store| store.health()).await;
    let (status, store_json) = match store {
        Ok(health) => (
            StatusCode::OK,
            json!({ "status": "ok", "schema_version": health.schema_version,
                    "instance_id": health.instance_id, "created_at": health.created_at }),
        ),
        Err(e) => {
            tracing::error!(error = %e, "health check: the store does not answer");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({ "status": "unavailable" }),
            )
        }
    };
    let media = MediaHealth::of(&app);
    let overall = if status.is_success() {
        "ok"
    } else {
        "degraded"
    };
    (
        status,
        Json(json!({
            "status": overall,
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_secs": app.started.elapsed().as_secs(),
            "store": store_json,
            "media": media,
            "urls": { "mode": app.site.mode(), "public_url": app.site.public_url() },
        })),
    )
}

/// What `/healthz` (and the admin dashboard) say about the media plane: the rtmp backend's own
/// state (nginx running or not); another backend's services are not asked.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MediaHealth {
    pub backend: MediaBackend,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

impl MediaHealth {
    pub fn of(app: &App) -> MediaHealth {
        let backend = app.config.media.backend;
        match &app.rtmp {
            Some(rtmp) => match rtmp.status() {
                Ok(()) => MediaHealth {
                    backend,
                    status: Some("ok"),
                    problem: None,
                },
                Err(problem) => MediaHealth {
                    backend,
                    status: Some("unavailable"),
                    problem: Some(problem.to_owned()),
                },
            },
            None => MediaHealth {
                backend,
                status: None,
                problem: None,
            },
        }
    }
}

/// `GET /metrics`: Prometheus text exposition, for callers on this machine or with
/// `server.metrics_token`; the series tell a stranger what runs here and how busy it is.
pub async fn metrics(
    State(app): State<Arc<App>>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    let token = &app.config.server.metrics_token;
    // `to_canonical`: on a dual-stack listener a local IPv4 caller is `::ffff:127.0.0.1`.
    let local = ip.to_canonical().is_loopback();
    let presented =
        bearer_token(&headers).is_some_and(|given| !token.is_empty() && same_secret(given, token));
    if !local && !presented {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "/metrics answers only this machine, or callers with the configured metrics token",
        ));
    }
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.metrics.render(&Gauges {
            rooms_open: app.rooms.open_rooms(),
            rooms_live: app.rooms.live_rooms().len(),
            sessions_finishing: app.rooms.sessions_finishing(),
            watch: app.watching.figures(),
        }),
    ))
}

/// Compares digests, so the time taken does not tell how much of a guess was right.
fn same_secret(given: &str, expected: &str) -> bool {
    Sha256::digest(given.as_bytes()) == Sha256::digest(expected.as_bytes())
}
