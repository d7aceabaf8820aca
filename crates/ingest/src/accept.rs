//! One request that brings events: the token and a slot first (nothing
//! read before), the body within its bounds, normalized whole, published
//! within [`BROKER_WAIT`], and the answer.

use std::time::Duration;

use alertpost_config::{Credentials, Secret};
use alertpost_event::EventError;
use alertpost_event::normalize::{Format, normalize_slice};
use alertpost_seam::{ProducerError, Publish};
use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use crate::answers::{self, problem};
use crate::state::Ingest;
use crate::{BROKER_WAIT, MAX_BODY_BYTES};

/// Handles one request that brings events in `format`.
pub(crate) async fn accept<P: Publish>(
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
            axum::Json(answers::Problem {
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
            axum::Json(answers::Problem {
                error: format!(
                    "{} requests already in progress; try again",
                    state.max_concurrent
                ),
                index: None,
            }),
        )
            .into_response();
    };
    let body = match read_body(body, state.body_timeout).await {
        Ok(body) => body,
        Err(answer) => return answer,
    };
    let events = match normalize_slice(format, &body) {
        Ok(events) if events.is_empty() => {
            return problem(
                StatusCode::BAD_REQUEST,
                "no events in the body".to_owned(),
                None,
            );
        }
        Ok(events) => events,
        Err(e) => return problem(StatusCode::BAD_REQUEST, e.to_string(), None),
    };
    // The producer bounds each wait; this bounds the whole request (many
    // requests may queue for one reconnection).
    let producer = &state.producer;
    let Ok(result) = tokio::time::timeout(BROKER_WAIT, producer.publish_all(events)).await else {
        let backend = producer.backend();
        tracing::warn!("{backend} did not confirm in time; answering 503");
        return problem(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "{backend} did not confirm within {}s; the events may or may not be stored: send them again",
                BROKER_WAIT.as_secs()
            ),
            None,
        );
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
            let ids: Vec<String> = published.into_iter().map(|e| e.id).collect();
            (
                StatusCode::ACCEPTED,
                axum::Json(answers::Accepted {
                    accepted: ids.len(),
                    ids,
                }),
            )
                .into_response()
        }
        Err(e) => refused(e),
    }
}

/// The answer to a publish that did not go through.
fn refused(e: ProducerError) -> Response {
    match e {
        ProducerError::Invalid { index, source } => {
            let status = match source {
                EventError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                _ => StatusCode::BAD_REQUEST,
            };
            problem(status, source.to_string(), Some(index))
        }
        ProducerError::Unavailable {
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
        } => {
            tracing::warn!(error = %e, "ingest could not publish");
            let what = if matches!(e, ProducerError::Refused { .. }) {
                format!("{backend} refused an event")
            } else {
                format!("{backend} is unavailable")
            };
            problem(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "{what} ({confirmed} of {total} events confirmed); the events may or may not be stored: send them again"
                ),
                None,
            )
        }
        ProducerError::Topology(_) => {
            problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), None)
        }
    }
}

/// Whether `headers` carry one of `tokens` (none configured: open), as a
/// Bearer token or the password of Basic authentication, read as the admin
/// API reads them ([`alertpost_config::Credentials`]).
fn authorized(tokens: &[Secret], headers: &HeaderMap) -> bool {
    if tokens.is_empty() {
        return true;
    }
    let Some(presented) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| Credentials::token(v.as_bytes(), true))
    else {
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
                problem(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the body is over the {MAX_BODY_BYTES}-byte limit"),
                    None,
                )
            } else {
                problem(
                    StatusCode::BAD_REQUEST,
                    format!("cannot read the body: {e}"),
                    None,
                )
            })
        }
        Err(_) => Err(problem(
            StatusCode::REQUEST_TIMEOUT,
            format!("the body did not arrive within {} ms", within.as_millis()),
            None,
        )),
    }
}
