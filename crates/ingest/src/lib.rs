//! alertpost's HTTP ingest: payloads in, confirmed events out.
//!
//! | route | does |
//! | --- | --- |
//! | `POST /v1/events` | normalized events: one object or an array |
//! | `POST /v1/ingest/<format>` | a source's own payload (`alertmanager`, `grafana`, `hertzbeat`, `grafana-oncall`, `aporia`), one event per alert |
//! | `GET /healthz` | the process is alive |
//! | `GET /readyz` | connected to RabbitMQ |
//! | `GET /metrics` | `alertpost_events_published_total{source}`, `alertpost_broker_connected`, process metrics |
//!
//! Answers: `202` with the ids once RabbitMQ has confirmed every event;
//! `400` with a JSON `error` for input that is not valid (nothing is
//! published then: the whole body is checked first); `404` for an unknown
//! format; `413` for a body over [`MAX_BODY_BYTES`] or an event over the
//! event size cap; `503` while RabbitMQ is unreachable, blocks publishing
//! (a memory or disk alarm) or does not confirm within [`BROKER_WAIT`]:
//! never a hang, never a `202` for what was not confirmed.

use std::future::Future;

use alertpost_event::EventError;
use alertpost_event::normalize::{Format, normalize};
use alertpost_metrics::IngestMetrics;
use alertpost_producer::{ProducerError, Publish};
use axum::Router;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use serde_json::{Value, json};

/// The largest request body accepted: room for a big Alertmanager group.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// The most a request waits for RabbitMQ (a connection, the confirms) before
/// it is answered 503: callers (Alertmanager, Grafana) retry, and a hung
/// request helps no one.
pub const BROKER_WAIT: std::time::Duration = std::time::Duration::from_secs(4);

/// What every request shares.
#[derive(Clone)]
struct Ingest<P> {
    producer: P,
    metrics: IngestMetrics,
}

/// The ingest routes over `producer` (RabbitMQ's [`alertpost_producer::Producer`],
/// or the embedded queue's).
pub fn router<P: Publish>(producer: P) -> Router {
    Router::new()
        .route("/v1/events", post(events::<P>))
        .route("/v1/ingest/{format}", post(ingest::<P>))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz::<P>))
        .route("/metrics", get(metrics::<P>))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(Ingest {
            producer: producer.with_timeout(BROKER_WAIT),
            metrics: IngestMetrics::new(),
        })
}

/// Serves the ingest on `listener` until `shutdown` completes; requests in
/// progress finish first.
pub async fn serve<P: Publish>(
    listener: tokio::net::TcpListener,
    producer: P,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let result = axum::serve(listener, router(producer.clone()))
        .with_graceful_shutdown(shutdown)
        .await;
    producer.close().await;
    result
}

async fn events<P: Publish>(
    State(state): State<Ingest<P>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    accept(&state, Format::Events, body).await
}

async fn ingest<P: Publish>(
    State(state): State<Ingest<P>>,
    Path(format): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match format.parse::<Format>() {
        Ok(format) => accept(&state, format, body).await,
        Err(e) => error(StatusCode::NOT_FOUND, e.reason, None),
    }
}

async fn metrics<P: Publish>(State(state): State<Ingest<P>>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            alertpost_metrics::CONTENT_TYPE,
        )],
        state.metrics.encode(),
    )
        .into_response()
}

async fn readyz<P: Publish>(State(state): State<Ingest<P>>) -> Response {
    let checked = state.producer.check().await;
    let blocked = matches!(&checked, Err(n) if n.blocked);
    state.metrics.broker_blocked.set(i64::from(blocked));
    state
        .metrics
        .broker_connected
        .set(i64::from(checked.is_ok() || blocked));
    match checked {
        Ok(()) => (StatusCode::OK, axum::Json(json!({"ready": true}))).into_response(),
        Err(n) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"ready": false, "error": n.reason, "reason": n.reason})),
        )
            .into_response(),
    }
}

async fn accept<P: Publish>(
    state: &Ingest<P>,
    format: Format,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let producer = &state.producer;
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            let status = rejection.status();
            let reason = if status == StatusCode::PAYLOAD_TOO_LARGE {
                format!("the body is over the {MAX_BODY_BYTES}-byte limit")
            } else {
                rejection.body_text()
            };
            return error(status, reason, None);
        }
    };
    let doc: Value = match serde_json::from_slice(&body) {
        Ok(doc) => doc,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid JSON: {e}"), None),
    };
    let events = match normalize(format, doc) {
        Ok(events) if events.is_empty() => {
            return error(
                StatusCode::BAD_REQUEST,
                "no events in the body".to_owned(),
                None,
            );
        }
        Ok(events) => events,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.reason, None),
    };
    // The producer bounds each wait; this bounds the whole request (many
    // requests may queue for one reconnection).
    let result = match tokio::time::timeout(BROKER_WAIT, producer.publish_all(events)).await {
        Ok(result) => result,
        Err(_) => {
            tracing::warn!("RabbitMQ did not confirm in time; answering 503");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "RabbitMQ did not confirm within {}s; the events may or may not be stored: send them again",
                    BROKER_WAIT.as_secs()
                ),
                None,
            );
        }
    };
    state.metrics.broker_connected.set(i64::from(!matches!(
        result,
        Err(ProducerError::Unavailable { .. })
    )));
    match result {
        Ok(published) => {
            for e in &published {
                state.metrics.published(&e.source);
            }
            let ids: Vec<&str> = published.iter().map(|e| e.id.as_str()).collect();
            (
                StatusCode::ACCEPTED,
                axum::Json(json!({"accepted": ids.len(), "ids": ids})),
            )
                .into_response()
        }
        Err(ProducerError::Invalid { index, source }) => {
            let status = match source {
                EventError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                _ => StatusCode::BAD_REQUEST,
            };
            error(status, source.to_string(), Some(index))
        }
        Err(e @ (ProducerError::Unavailable { .. } | ProducerError::Refused { .. })) => {
            tracing::warn!(error = %e, "ingest could not publish");
            error(StatusCode::SERVICE_UNAVAILABLE, e.to_string(), None)
        }
        Err(e @ ProducerError::Topology(_)) => {
            error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), None)
        }
    }
}

fn error(status: StatusCode, reason: String, index: Option<usize>) -> Response {
    let mut body = json!({"error": reason});
    if let Some(index) = index {
        body["index"] = json!(index);
    }
    (status, axum::Json(body)).into_response()
}
