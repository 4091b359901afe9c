//! Operations endpoints: `/healthz` for liveness checks and `/metrics` for Prometheus.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;

use crate::app::App;
use crate::metrics::Gauges;

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
    let media = match (&app.rtmp, app.config.media.backend) {
        (Some(rtmp), _) => match rtmp.status() {
            Ok(()) => json!({ "backend": "rtmp", "status": "ok" }),
            Err(problem) => {
                json!({ "backend": "rtmp", "status": "unavailable", "problem": problem })
            }
        },
        (None, backend) => json!({ "backend": backend }),
    };
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

/// `GET /metrics`: Prometheus text exposition.
pub async fn metrics(State(app): State<Arc<App>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.metrics.render(&Gauges {
            rooms_open: app.rooms.open_rooms(),
            rooms_live: app.rooms.live_rooms().len(),
        }),
    )
}
