//! The routes probes and Prometheus read, open whatever the token:
//! `/healthz`, `/readyz`, `/metrics`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Serialize;

use crate::state::Admin;

/// Alive.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "Alive", body = String, content_type = "text/plain")))]
pub(crate) async fn healthz() -> &'static str {
    "ok\n"
}

/// `/readyz`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Ready {
    pub ready: bool,
    pub broker_connected: bool,
    pub consuming: bool,
    pub publishing: bool,
    /// The store's last write succeeded.
    pub store: bool,
    /// Why it is not ready.
    pub reason: Option<String>,
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
pub(crate) async fn metrics_text<B>(State(admin): State<Admin<B>>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            alertpost_metrics::CONTENT_TYPE,
        )],
        admin.view.metrics_text(),
    )
}

/// Whether the worker can do its work now.
#[utoipa::path(
    get,
    path = "/readyz",
    responses(
        (status = 200, description = "Connected, consuming, able to publish, the store writing", body = Ready),
        (status = 503, description = "Not ready; `reason` says why", body = Ready),
    )
)]
pub(crate) async fn readyz<B>(State(admin): State<Admin<B>>) -> impl IntoResponse {
    let health = admin.view.health();
    let store_ok = admin.view.store_healthy();
    let ready = health.ready() && store_ok;
    let reason = match health.reason() {
        Some(reason) => Some(reason),
        None if !store_ok => Some("the store's last write failed".to_owned()),
        None => None,
    };
    let body = Ready {
        ready,
        broker_connected: health.connected(),
        consuming: health.consuming(),
        publishing: health.connected() && health.not_publishing().is_none(),
        store: store_ok,
        reason,
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body))
}
