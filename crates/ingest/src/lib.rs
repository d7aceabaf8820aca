//! alertpost's HTTP ingest: payloads in, confirmed events out.
//!
//! | route | does |
//! | --- | --- |
//! | `POST /v1/events` | normalized events: one object or an array |
//! | `POST /v1/ingest/<format>` | a source's own payload (`alertmanager`, `grafana`, `hertzbeat`, `grafana-oncall`, `aporia`), one event per alert |
//! | `GET /healthz` | the process is alive |
//! | `GET /readyz` | connected to RabbitMQ |
//! | `GET /metrics` | `alertpost_events_published_total{source}`, `alertpost_broker_connected`, process metrics |
//! | `GET /openapi.json` | this API as OpenAPI 3.1 ([`openapi`]) |
//!
//! Answers: `202` with the ids once RabbitMQ has confirmed every event;
//! `400` with a JSON `error` for input that is not valid (nothing is
//! published then: the whole body is checked first); `401` without one of
//! the configured tokens (`[ingest] tokens`; Bearer, or Basic with the token
//! as password); `404` for an unknown format; `408` for a body not sent
//! within [`BODY_TIMEOUT`]; `413` for a body over [`MAX_BODY_BYTES`] or an
//! event over the event size cap; `503` beyond `max_concurrent` requests at
//! once, and while RabbitMQ is unreachable, blocks publishing (a memory or
//! disk alarm) or does not confirm within [`BROKER_WAIT`]: never a hang,
//! never a `202` for what was not confirmed. A client has
//! [`HEADER_TIMEOUT`] to send its headers; a stop waits at most
//! [`SHUTDOWN_WAIT`] for requests in progress.

pub mod openapi;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use alertpost_config::{IngestSettings, Secret};
use alertpost_event::EventError;
use alertpost_event::normalize::{Format, normalize_slice};
use alertpost_metrics::IngestMetrics;
use alertpost_seam::{ProducerError, Publish};
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;

/// The largest request body accepted: room for a big Alertmanager group.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// The most a request waits for RabbitMQ (a connection, the confirms) before
/// it is answered 503: callers (Alertmanager, Grafana) retry, and a hung
/// request helps no one.
pub const BROKER_WAIT: Duration = Duration::from_secs(4);
/// A client's time to send its request line and headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// A client's time to send its whole body (4 MiB at a slow 500 KiB/s).
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a stop waits for requests in progress (each is bounded by the
/// timeouts above and [`BROKER_WAIT`]); connections left are then closed.
pub const SHUTDOWN_WAIT: Duration = Duration::from_secs(20);

/// What every request shares.
#[derive(Clone)]
struct Ingest<P> {
    producer: P,
    metrics: IngestMetrics,
    tokens: Arc<Vec<Secret>>,
    /// One permit per request in progress.
    slots: Arc<tokio::sync::Semaphore>,
    max_concurrent: usize,
    body_timeout: Duration,
}

/// The ingest routes over `producer` (RabbitMQ's [`alertpost_producer::Producer`],
/// or the embedded queue's), with `settings`' tokens and bound.
pub fn router<P: Publish>(producer: P, settings: &IngestSettings) -> Router {
    router_bounded(producer, settings, BODY_TIMEOUT)
}

fn router_bounded<P: Publish>(producer: P, settings: &IngestSettings, body: Duration) -> Router {
    Router::new()
        .route("/v1/events", post(events::<P>))
        .route("/v1/ingest/{format}", post(ingest::<P>))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz::<P>))
        .route("/metrics", get(metrics::<P>))
        .route("/openapi.json", get(openapi_json))
        .with_state(Ingest {
            producer: producer.with_timeout(BROKER_WAIT),
            metrics: IngestMetrics::new(),
            tokens: Arc::new(settings.tokens.clone()),
            slots: Arc::new(tokio::sync::Semaphore::new(settings.max_concurrent)),
            max_concurrent: settings.max_concurrent,
            body_timeout: body,
        })
}

/// How long a client may take, and a stop may wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub header: Duration,
    pub body: Duration,
    pub shutdown: Duration,
}

impl Default for Bounds {
    fn default() -> Bounds {
        Bounds {
            header: HEADER_TIMEOUT,
            body: BODY_TIMEOUT,
            shutdown: SHUTDOWN_WAIT,
        }
    }
}

/// Serves the ingest on `listener` until `shutdown` completes; requests in
/// progress finish first, for at most [`SHUTDOWN_WAIT`].
pub async fn serve<P: Publish>(
    listener: tokio::net::TcpListener,
    producer: P,
    settings: IngestSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_bounded(listener, producer, settings, Bounds::default(), shutdown).await
}

/// [`serve`] with other bounds than the defaults (tests use short ones).
pub async fn serve_bounded<P: Publish>(
    listener: tokio::net::TcpListener,
    producer: P,
    settings: IngestSettings,
    bounds: Bounds,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router_bounded(producer.clone(), &settings, bounds.body);
    // hyper directly rather than `axum::serve`: it is where a header read
    // timeout can be set, and a stop can be bounded.
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    // Every connection's task, so those left after the stop's bound can be
    // ended (not left to publish after the producer is closed).
    let mut connections = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        while connections.try_join_next().is_some() {}
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, say: wait a little, go on.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(bounds.header);
        let connection =
            graceful.watch(http.serve_connection(hyper_util::rt::TokioIo::new(stream), service));
        connections.spawn(async move {
            let _ = connection.await;
        });
    }
    drop(listener);
    if tokio::time::timeout(bounds.shutdown, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            left = connections.len(),
            "requests still in progress after {} ms; closing their connections",
            bounds.shutdown.as_millis()
        );
        connections.abort_all();
        while connections.join_next().await.is_some() {}
    }
    producer.close().await;
    Ok(())
}

/// Publishes one event or an array of them.
#[utoipa::path(
    post,
    path = "/v1/events",
    request_body(content = openapi::EventsBody, content_type = "application/json"),
    responses(
        (status = 202, description = "Every event stored, confirmed by the broker", body = openapi::Accepted),
        (status = 400, description = "Not JSON, or an event that is not valid (the whole request is refused)", body = openapi::Problem),
        (status = 401, description = "A token is needed", body = openapi::Problem),
        (status = 408, description = "The body did not arrive in time", body = openapi::Problem),
        (status = 413, description = "The body or an event is too large", body = openapi::Problem),
        (status = 503, description = "The broker cannot store it now, or the ingest is at its bound", body = openapi::Problem),
    ),
    security((), ("token" = []))
)]
async fn events<P: Publish>(
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
        (status = 202, description = "Every event stored, confirmed by the broker", body = openapi::Accepted),
        (status = 400, description = "Not JSON, or a payload the format refuses", body = openapi::Problem),
        (status = 401, description = "A token is needed", body = openapi::Problem),
        (status = 404, description = "No such format", body = openapi::Problem),
        (status = 408, description = "The body did not arrive in time", body = openapi::Problem),
        (status = 413, description = "The body or an event is too large", body = openapi::Problem),
        (status = 503, description = "The broker cannot store it now, or the ingest is at its bound", body = openapi::Problem),
    ),
    security((), ("token" = []))
)]
async fn ingest<P: Publish>(
    State(state): State<Ingest<P>>,
    Path(format): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match format.parse::<Format>() {
        Ok(format) => accept(&state, format, &headers, body).await,
        Err(e) => error(StatusCode::NOT_FOUND, e.reason, None),
    }
}

/// Whether `headers` carry one of `tokens` (none configured: open).
fn authorized(tokens: &[Secret], headers: &HeaderMap) -> bool {
    if tokens.is_empty() {
        return true;
    }
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let (scheme, rest) = given.trim().split_once(' ').unwrap_or((given, ""));
    let presented = if scheme.eq_ignore_ascii_case("bearer") {
        rest.trim().as_bytes().to_vec()
    } else if scheme.eq_ignore_ascii_case("basic") {
        use base64::Engine;
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(rest.trim()) else {
            return false;
        };
        // `user:password`; the token is the password, the user anything.
        match decoded.iter().position(|b| *b == b':') {
            Some(colon) => decoded[colon + 1..].to_vec(),
            None => return false,
        }
    } else {
        return false;
    };
    // Every token compared, each in constant time: nothing tells which
    // came close.
    tokens
        .iter()
        .fold(false, |found, t| found | t.is(&presented))
}

/// Reads the body within `within` and [`MAX_BODY_BYTES`].
async fn read_body(body: Body, within: Duration) -> Result<Bytes, Response> {
    match tokio::time::timeout(within, axum::body::to_bytes(body, MAX_BODY_BYTES)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) => {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            Err(if too_large {
                error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the body is over the {MAX_BODY_BYTES}-byte limit"),
                    None,
                )
            } else {
                error(
                    StatusCode::BAD_REQUEST,
                    format!("cannot read the body: {e}"),
                    None,
                )
            })
        }
        Err(_) => Err(error(
            StatusCode::REQUEST_TIMEOUT,
            format!("the body did not arrive within {} ms", within.as_millis()),
            None,
        )),
    }
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
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

/// Alive.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "Alive", body = String, content_type = "text/plain")))]
async fn healthz() -> &'static str {
    "ok\n"
}

/// The document describing this API.
#[utoipa::path(get, path = "/openapi.json", responses((status = 200, description = "This OpenAPI document", content_type = "application/json")))]
async fn openapi_json() -> axum::Json<serde_json::Value> {
    axum::Json(openapi::document())
}

/// Whether events can be stored now.
#[utoipa::path(
    get,
    path = "/readyz",
    responses(
        (status = 200, description = "The broker is reachable and takes publishes", body = openapi::Ready),
        (status = 503, description = "Unreachable, or blocking publishes", body = openapi::Ready),
    )
)]
async fn readyz<P: Publish>(State(state): State<Ingest<P>>) -> Response {
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
            axum::Json(openapi::Ready {
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
                axum::Json(openapi::Ready {
                    ready: false,
                    error: Some(reason.clone()),
                    reason: Some(reason),
                }),
            )
                .into_response()
        }
    }
}

async fn accept<P: Publish>(
    state: &Ingest<P>,
    format: Format,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    // Before anything is read: an unauthenticated client costs nothing.
    if !authorized(&state.tokens, headers) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer, Basic realm=\"alertpost\"")],
            axum::Json(openapi::Problem {
                error: "a token is needed: Authorization: Bearer <token> (or Basic, the token as password)".to_owned(),
                index: None,
            }),
        )
            .into_response();
    }
    let Ok(_slot) = state.slots.clone().try_acquire_owned() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            axum::Json(openapi::Problem {
                error: format!(
                    "{} requests already in progress; try again",
                    state.max_concurrent
                ),
                index: None,
            }),
        )
            .into_response();
    };
    let producer = &state.producer;
    let body = match read_body(body, state.body_timeout).await {
        Ok(body) => body,
        Err(answer) => return answer,
    };
    let events = match normalize_slice(format, &body) {
        Ok(events) if events.is_empty() => {
            return error(
                StatusCode::BAD_REQUEST,
                "no events in the body".to_owned(),
                None,
            );
        }
        Ok(events) => events,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string(), None),
    };
    // The producer bounds each wait; this bounds the whole request (many
    // requests may queue for one reconnection).
    let result = match tokio::time::timeout(BROKER_WAIT, producer.publish_all(events)).await {
        Ok(result) => result,
        Err(_) => {
            let backend = producer.backend();
            tracing::warn!("{backend} did not confirm in time; answering 503");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "{backend} did not confirm within {}s; the events may or may not be stored: send them again",
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
                axum::Json(openapi::Accepted {
                    accepted: ids.len(),
                    ids: ids.into_iter().map(str::to_owned).collect(),
                }),
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
        Err(
            e @ (ProducerError::Unavailable {
                backend,
                confirmed,
                total,
                ..
            }
            | ProducerError::Refused {
                backend,
                confirmed,
                total,
                ..
            }),
        ) => {
            tracing::warn!(error = %e, "ingest could not publish");
            let what = if matches!(e, ProducerError::Refused { .. }) {
                format!("{backend} refused an event")
            } else {
                format!("{backend} is unavailable")
            };
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "{what} ({confirmed} of {total} events confirmed); the events may or may not be stored: send them again"
                ),
                None,
            )
        }
        Err(e @ ProducerError::Topology(_)) => {
            error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), None)
        }
    }
}

fn error(status: StatusCode, reason: String, index: Option<usize>) -> Response {
    let body = openapi::Problem {
        error: reason,
        index,
    };
    (status, axum::Json(body)).into_response()
}
