//! The worker's admin HTTP server.
//!
//! | route | answers |
//! | --- | --- |
//! | `GET /healthz` | the process is alive |
//! | `GET /readyz` | 200 when connected to the broker, consuming, able to publish (not blocked by an alarm, its publishing connection up) and the store writes; else 503 with the `reason` |
//! | `GET /metrics` | Prometheus metrics |
//! | `GET /v1/attempts?event_id=&integration=&limit=` | attempts from this worker's store, JSON, oldest first |
//! | `GET /v1/dead-letters?integration=&limit=` | dead letters this worker produced, JSON, newest first |

use std::future::Future;
use std::sync::Arc;

use alertpost_metrics::WorkerMetrics;
use alertpost_store::Store;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;

use crate::health::Health;

/// Records returned when the query names no limit, and the most it may ask.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 10_000;

#[derive(Clone)]
struct Admin {
    health: Arc<Health>,
    store: Store,
    metrics: WorkerMetrics,
}

pub fn router(health: Arc<Health>, store: Store, metrics: WorkerMetrics) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/v1/attempts", get(attempts))
        .route("/v1/dead-letters", get(dead_letters))
        .with_state(Admin {
            health,
            store,
            metrics,
        })
}

async fn metrics_text(State(admin): State<Admin>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            alertpost_metrics::CONTENT_TYPE,
        )],
        admin.metrics.encode(),
    )
}

async fn readyz(State(admin): State<Admin>) -> impl IntoResponse {
    let health = &admin.health;
    let store_ok = admin.store.healthy();
    let ready = health.ready() && store_ok;
    let reason = match health.reason() {
        Some(reason) => Some(reason),
        None if !store_ok => Some("the store's last write failed".to_owned()),
        None => None,
    };
    let body = json!({
        "ready": ready,
        "broker_connected": health.connected(),
        "consuming": health.consuming(),
        "publishing": health.connected() && health.not_publishing().is_none(),
        "store": store_ok,
        "reason": reason,
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body))
}

#[derive(Deserialize)]
struct AttemptsQuery {
    event_id: Option<String>,
    integration: Option<String>,
    limit: Option<usize>,
}

async fn attempts(State(admin): State<Admin>, Query(q): Query<AttemptsQuery>) -> impl IntoResponse {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
    let store = admin.store.clone();
    // sled reads are blocking calls; keep them off the async threads.
    let found = tokio::task::spawn_blocking(move || {
        store.attempts(q.event_id.as_deref(), q.integration.as_deref(), limit)
    })
    .await
    .unwrap_or_default();
    axum::Json(found)
}

#[derive(Deserialize)]
struct DeadQuery {
    integration: Option<String>,
    limit: Option<usize>,
}

async fn dead_letters(State(admin): State<Admin>, Query(q): Query<DeadQuery>) -> impl IntoResponse {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
    let store = admin.store.clone();
    let found =
        tokio::task::spawn_blocking(move || store.dead_letters(q.integration.as_deref(), limit))
            .await
            .unwrap_or_default();
    axum::Json(found)
}

/// Serves `router` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
