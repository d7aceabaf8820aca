//! The routes: the two that take events, and what probes and Prometheus
//! read.

use alertpost_event::normalize::Format;
use alertpost_seam::Publish;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::accept::accept;
use crate::answers::{self, problem};
use crate::state::Ingest;

/// Publishes one event or an array of them.
#[utoipa::path(
    post,
    path = "/v1/events",
    request_body(content = answers::EventsBody, content_type = "application/json"),
    responses(
        (status = 202, description = "Every event stored, confirmed by the broker", body = answers::Accepted),
        (status = 400, description = "Not JSON, or an event that is not valid (the whole request is refused)", body = answers::Problem),
        (status = 401, description = "A token is needed", body = answers::Problem),
        (status = 408, description = "The body did not arrive in time", body = answers::Problem),
        (status = 413, description = "The body or an event is too large", body = answers::Problem),
        (status = 503, description = "The broker cannot store it now, or the ingest is at its bound", body = answers::Problem),
    ),
    security((), ("token" = []))
)]
pub(crate) async fn events<P: Publish>(
    State(state): State<Ingest<P>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    accept(&state, Format::Events, &headers, body).await
}

/// Publishes the events of a source's payload.
#[utoipa::path(
    post,
    path = "/v1/ingest/{format}",
    params(("format" = String, Path, description = "A source format (the enum lists them)")),
    request_body(content = serde_json::Value, description = "The source's own payload, read leniently by its normalizer", content_type = "application/json"),
    responses(
        (status = 202, description = "Every event stored, confirmed by the broker", body = answers::Accepted),
        (status = 400, description = "Not JSON, or a payload the format refuses", body = answers::Problem),
        (status = 401, description = "A token is needed", body = answers::Problem),
        (status = 404, description = "No such format", body = answers::Problem),
        (status = 408, description = "The body did not arrive in time", body = answers::Problem),
        (status = 413, description = "The body or an event is too large", body = answers::Problem),
        (status = 503, description = "The broker cannot store it now, or the ingest is at its bound", body = answers::Problem),
    ),
    security((), ("token" = []))
)]
pub(crate) async fn ingest<P: Publish>(
    State(state): State<Ingest<P>>,
    Path(format): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match format.parse::<Format>() {
        Ok(format) => accept(&state, format, &headers, body).await,
        Err(e) => problem(StatusCode::NOT_FOUND, e.reason, None),
    }
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
pub(crate) async fn metrics<P: Publish>(State(state): State<Ingest<P>>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            alertpost_metrics::CONTENT_TYPE,
        )],
        state.metrics.encode(),
    )
        .into_response()
}

/// Alive.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "Alive", body = String, content_type = "text/plain")))]
pub(crate) async fn healthz() -> &'static str {
    "ok\n"
}

/// Whether events can be stored now.
#[utoipa::path(
    get,
    path = "/readyz",
    responses(
        (status = 200, description = "The broker is reachable and takes publishes", body = answers::Ready),
        (status = 503, description = "Unreachable, or blocking publishes", body = answers::Ready),
    )
)]
pub(crate) async fn readyz<P: Publish>(State(state): State<Ingest<P>>) -> Response {
    let checked = state.producer.check().await;
    let blocked = matches!(&checked, Err(n) if n.blocked);
    state.metrics.broker_blocked.set(i64::from(blocked));
    state
        .metrics
        .broker_connected
        .set(i64::from(checked.is_ok() || blocked));
    match checked {
        Ok(()) => (
            StatusCode::OK,
            axum::Json(answers::Ready {
                ready: true,
                error: None,
                reason: None,
            }),
        )
            .into_response(),
        Err(n) => {
            // The details (which node, which URL) go to the log; whoever
            // can reach the ingest learns only what kind of trouble it is.
            tracing::debug!(reason = %n.reason, "not ready");
            let backend = state.producer.backend();
            let reason = if n.blocked {
                format!("{backend} blocks publishing (a memory or disk alarm)")
            } else {
                format!("{backend} is unreachable (see the ingest's log)")
            };
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(answers::Ready {
                    ready: false,
                    error: Some(reason.clone()),
                    reason: Some(reason),
                }),
            )
                .into_response()
        }
    }
}
