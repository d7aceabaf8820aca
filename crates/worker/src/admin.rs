//! The worker's admin HTTP server.
//!
//! | route | answers |
//! | --- | --- |
//! | `GET /healthz` | the process is alive |
//! | `GET /readyz` | 200 when connected to the broker, consuming, able to publish (not blocked by an alarm, its publishing connection up) and the store writes; else 503 with the `reason` |
//! | `GET /metrics` | Prometheus metrics |
//! | `GET /v1/attempts?event_id=&integration=&limit=` | attempts from this worker's store, JSON, oldest first |
//! | `GET /v1/dead-letters?integration=&limit=` | dead letters this worker produced (its store's copies), JSON, newest first |
//! | `GET /v1/dlq?integration=&limit=` | the dead queue (every worker's), one row per delivery, oldest first |
//! | `GET /v1/dlq/{id}` | one dead letter in full, by its id, delivery id or event id; 404 if none |
//! | `POST /v1/dlq/replay` | body `{"integration": ID}`, `{"id": ID}` or `"all"`: sends them back to be delivered, attempts reset; answers `{"replayed", "unreadable"}` |
//! | `POST /v1/dlq/purge` | deletes every dead letter; answers `{"purged"}` |
//!
//! `limit` is at most [`MAX_LIMIT`] (100 when not given). With `[admin]
//! token` set, every `/v1/` route needs `Authorization: Bearer <token>`
//! (401 otherwise); `/healthz`, `/readyz` and `/metrics` stay open, for
//! probes and Prometheus. The dead-queue routes open a session with the
//! backend for the request (RabbitMQ: a connection of their own), so they
//! work whatever the worker's consumers are doing.

use std::future::Future;
use std::sync::Arc;

use alertpost_broker::{Backend, BrokerError, Reader, Session, Source};
use alertpost_config::Secret;
use alertpost_metrics::WorkerMetrics;
use alertpost_store::Store;
use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use crate::deadletters::{self, Through, Which};
use crate::health::Health;

/// Records returned when the query names no limit, and the most it may ask.
const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;

struct Admin<B> {
    health: Arc<Health>,
    store: Store,
    metrics: WorkerMetrics,
    backend: Arc<B>,
}

// Derived `Clone` would ask `B: Clone`; only the `Arc`s are cloned.
impl<B> Clone for Admin<B> {
    fn clone(&self) -> Admin<B> {
        Admin {
            health: self.health.clone(),
            store: self.store.clone(),
            metrics: self.metrics.clone(),
            backend: self.backend.clone(),
        }
    }
}

/// The admin API's routes over `backend` (whose dead queue the `/v1/dlq`
/// routes read); `token`: see the module docs.
pub fn router<B: Backend>(
    health: Arc<Health>,
    store: Store,
    metrics: WorkerMetrics,
    backend: Arc<B>,
    token: Option<Secret>,
) -> Router {
    let v1 = Router::new()
        .route("/v1/attempts", get(attempts::<B>))
        .route("/v1/dead-letters", get(dead_letters::<B>))
        .route("/v1/dlq", get(dlq_list::<B>))
        .route("/v1/dlq/replay", post(dlq_replay::<B>))
        .route("/v1/dlq/purge", post(dlq_purge::<B>))
        .route("/v1/dlq/{id}", get(dlq_show::<B>))
        .route_layer(middleware::from_fn_with_state(
            token.map(Arc::new),
            authorize,
        ));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz::<B>))
        .route("/metrics", get(metrics_text::<B>))
        .merge(v1)
        .with_state(Admin {
            health,
            store,
            metrics,
            backend,
        })
}

/// With a token configured, lets through only requests that bear it.
async fn authorize(
    State(token): State<Option<Arc<Secret>>>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(token) = token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                // The scheme is case-insensitive (RFC 9110 §11.1).
                let (scheme, rest) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then_some(rest)
            });
        if !given.is_some_and(|g| token.is(g.trim().as_bytes())) {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                axum::Json(json!({"error": "this route needs the admin token: Authorization: Bearer <token>"})),
            )
                .into_response();
        }
    }
    next.run(request).await
}

async fn metrics_text<B>(State(admin): State<Admin<B>>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            alertpost_metrics::CONTENT_TYPE,
        )],
        admin.metrics.encode(),
    )
}

async fn readyz<B>(State(admin): State<Admin<B>>) -> impl IntoResponse {
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

async fn attempts<B>(
    State(admin): State<Admin<B>>,
    Query(q): Query<AttemptsQuery>,
) -> impl IntoResponse {
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

async fn dead_letters<B>(
    State(admin): State<Admin<B>>,
    Query(q): Query<DeadQuery>,
) -> impl IntoResponse {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
    let store = admin.store.clone();
    let found =
        tokio::task::spawn_blocking(move || store.dead_letters(q.integration.as_deref(), limit))
            .await
            .unwrap_or_default();
    axum::Json(found)
}

/// A failure of the dead-queue routes: 503 with what went wrong (the
/// broker's errors carry no secrets: URLs come redacted).
fn unavailable(e: impl std::fmt::Display) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(json!({"error": e.to_string()})),
    )
        .into_response()
}

/// Runs `work` on the dead queue of a session of its own, then gives back
/// what it took and did not ack, and closes the session.
async fn with_dead_queue<B: Backend, T>(
    backend: &B,
    work: impl AsyncFnOnce(&B::Session, &mut <B::Session as Session>::Reader) -> T,
) -> Result<T, BrokerError> {
    let session = backend.open().await?;
    let mut reader = match session.reader(&Source::Dead).await {
        Ok(r) => r,
        Err(e) => {
            session.close().await;
            return Err(e);
        }
    };
    let out = work(&session, &mut reader).await;
    reader.close().await;
    session.close().await;
    Ok(out)
}

/// Runs `work` in a task of its own: a caller that hangs up mid-request
/// neither cuts a replay short nor leaves what it took out of the dead
/// queue held by a session nobody closes.
async fn detached<T: Send + 'static>(
    work: impl Future<Output = Result<T, BrokerError>> + Send + 'static,
) -> Result<T, Response> {
    match tokio::spawn(work).await {
        Ok(Ok(out)) => Ok(out),
        Ok(Err(e)) => Err(unavailable(e)),
        Err(e) => Err(unavailable(format!("the dead-queue task failed: {e}"))),
    }
}

async fn dlq_list<B: Backend>(
    State(admin): State<Admin<B>>,
    Query(q): Query<DeadQuery>,
) -> Response {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
    let backend = admin.backend.clone();
    let listed = detached(async move {
        let integration = q.integration.as_deref();
        with_dead_queue(&*backend, async |_, reader| {
            deadletters::list(reader, integration, limit).await
        })
        .await?
    })
    .await;
    match listed {
        Ok(rows) => axum::Json(rows).into_response(),
        Err(answer) => answer,
    }
}

async fn dlq_show<B: Backend>(State(admin): State<Admin<B>>, Path(id): Path<String>) -> Response {
    let backend = admin.backend.clone();
    let wanted = id.clone();
    let found = detached(async move {
        with_dead_queue(&*backend, async |_, reader| {
            deadletters::show(reader, &wanted).await
        })
        .await?
    })
    .await;
    match found {
        Ok(Some(full)) => axum::Json(full).into_response(),
        Ok(None) => (
            StatusCode::NOT_FOUND,
            axum::Json(
                json!({"error": format!("no dead letter `{id}` (by id, delivery id or event id)")}),
            ),
        )
            .into_response(),
        Err(answer) => answer,
    }
}

async fn dlq_replay<B: Backend>(
    State(admin): State<Admin<B>>,
    axum::Json(which): axum::Json<Which>,
) -> Response {
    let backend = admin.backend.clone();
    let chosen = which.clone();
    let done = detached(async move {
        let done = with_dead_queue(&*backend, async |session, reader| {
            deadletters::replay(reader, &Through(session), &chosen).await
        })
        .await?;
        // A replay that failed half-way: what went out stays out (acked),
        // the rest stays dead; the answer says which.
        Ok(done.map_err(|e| e.to_string()))
    })
    .await;
    match done {
        Ok(Ok(done)) => {
            tracing::info!(
                replayed = done.replayed,
                ?which,
                "dead letters replayed through the admin API"
            );
            axum::Json(done).into_response()
        }
        Ok(Err(e)) => unavailable(e),
        Err(answer) => answer,
    }
}

async fn dlq_purge<B: Backend>(State(admin): State<Admin<B>>) -> Response {
    let backend = admin.backend.clone();
    let purged = detached(async move {
        with_dead_queue(&*backend, async |_, reader| {
            deadletters::purge(reader).await
        })
        .await?
    })
    .await;
    match purged {
        Ok(n) => {
            tracing::warn!(purged = n, "dead queue purged through the admin API");
            axum::Json(json!({"purged": n})).into_response()
        }
        Err(answer) => answer,
    }
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
