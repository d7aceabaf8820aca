//! One delivery of one event to one integration: its turn, the body, the
//! attempt, the record, and the [`Step`] it comes to.
//!
//! A delivery's turn comes one of two ways ([`Turn`]):
//! - `Now` (from the events or a job back from a wait): it starts only if
//!   its integration has a permit free, a token in its rate limit's bucket
//!   and its circuit lets it through; otherwise it goes to the
//!   integration's lane, and the message it came in does not wait for it;
//! - `Wait` (from its lane): it waits for a permit, in order, for the
//!   bucket and for the circuit, up to `HOLD_MAX` (then back to the end of
//!   its lane); when the session stops, it gives up and its message goes
//!   back to the lane.

use std::sync::Arc;
use std::time::Duration;

use alertpost_deliver::Verdict;
use alertpost_event::Event;
use alertpost_event::job::{AttemptSummary, DeadLetter, DeadReason, DeliveryJob, JobHead, Replay};
use alertpost_metrics::Outcome;
use alertpost_render::{Context, Extra};
use alertpost_store::{AttemptOutcome, AttemptRecord, SentRequest};
use bytes::Bytes;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::attempt::{self, Tried, duration_ms};
use crate::circuit::Gate;
use crate::decide::{self, Decision};
use crate::handoff::{LaneJob, Step};
use crate::runtime::{Ctx, Runtime, Target};

/// Bytes of a response body kept in the store.
const STORED_BODY: usize = 4096;

/// The start of a response body as kept: masked whole, then cut, so no
/// secret is cut in two and half kept.
fn stored_body(body: &[u8], secrets: &[String]) -> String {
    if secrets.is_empty() {
        return String::from_utf8_lossy(&body[..body.len().min(STORED_BODY)]).into_owned();
    }
    let mut text = alertpost_config::mask(&String::from_utf8_lossy(body), secrets);
    if text.len() > STORED_BODY {
        let cut = (0..=STORED_BODY)
            .rev()
            .find(|n| text.is_char_boundary(*n))
            .unwrap_or(0);
        text.truncate(cut);
    }
    text
}

/// A delivery waits its lane's turn at most this long, then goes to the
/// back of its lane: no message is held near RabbitMQ's consumer timeout
/// (30 minutes by default), however long a circuit stays open.
const HOLD_MAX: Duration = Duration::from_secs(300);
/// A delivery waiting for its circuit looks again at most this often,
/// whatever the cooldown (a tiny one would make it spin).
const RECHECK_MIN: Duration = Duration::from_millis(50);

/// How a delivery gets its turn; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Turn {
    Now,
    Wait,
}

/// One delivery in progress.
pub(crate) struct Delivery<'a> {
    pub event: &'a Event,
    pub target: &'a Arc<Target>,
    pub id: String,
    /// The hop of the message it came in (0 for an event).
    pub hop: u32,
    /// Attempts made before this one.
    pub attempts: u32,
    /// `None`: never attempted nor handed on yet.
    pub first_attempt_at: Option<OffsetDateTime>,
    pub history: Vec<AttemptSummary>,
    pub replayed: Option<Replay>,
    /// The queue (or stream) it came from, for dead letters.
    pub origin: &'a str,
}

/// What the body is made from: the event's JSON (the `alertpost` body as
/// it is) and, when a template needs it, the rendering context; both built
/// once per message.
#[derive(Clone, Copy)]
pub(crate) struct Source<'a> {
    pub event_json: &'a Bytes,
    pub context: Option<&'a Context>,
}

impl Delivery<'_> {
    /// This delivery as the job of its next hop, due at `due`.
    fn into_job(self, first: OffsetDateTime, due: OffsetDateTime) -> DeliveryJob {
        DeliveryJob {
            delivery_id: self.id,
            integration: self.target.integration.id.clone(),
            attempts: self.attempts,
            hop: self.hop + 1,
            first_attempt_at: first,
            not_before: due,
            replayed: self.replayed,
            history: self.history,
            event: self.event.clone(),
        }
    }

    fn first_or(&self, now: OffsetDateTime) -> OffsetDateTime {
        self.first_attempt_at.unwrap_or(now)
    }

    /// To the integration's lane, due now; `event_json` is the event as
    /// the message carried it.
    fn into_lane(self, event_json: &[u8]) -> Step {
        let now = OffsetDateTime::now_utc();
        let head = JobHead {
            delivery_id: &self.id,
            integration: &self.target.integration.id,
            attempts: self.attempts,
            first_attempt_at: self.first_or(now),
            not_before: now,
            hop: self.hop + 1,
            replayed: self.replayed.as_ref(),
            history: &self.history,
        };
        let json = Bytes::from(head.to_json(event_json));
        let job = LaneJob {
            delivery_id: self.id,
            integration: self.target.integration.id.clone(),
            hop: self.hop + 1,
            json,
        };
        Step::Lane(Box::new(job), self.target.clone())
    }

    fn dead(self, reason: DeadReason, detail: String) -> Step {
        let now = OffsetDateTime::now_utc();
        let target = self.target.clone();
        let origin = self.origin.to_owned();
        let first = self.first_or(now);
        let letter = DeadLetter::of_job(self.into_job(first, now), reason, detail, origin, now);
        Step::Dead(Box::new(letter), Some(target))
    }
}

/// Takes a delivery from its turn to its step. `None`: it was waiting its
/// turn when `halt` came; nothing was done.
pub(crate) async fn run(
    ctx: &Ctx,
    runtime: &Runtime,
    d: Delivery<'_>,
    source: Source<'_>,
    turn: Turn,
    halt: &CancellationToken,
) -> Option<Step> {
    let target = d.target;
    let policy = target.integration.retry;
    // Checked on arrival and after each wait for the circuit.
    let first = d.first_attempt_at;
    let too_old = || first.is_some_and(|f| decide::expired(&policy, f, OffsetDateTime::now_utc()));
    if too_old() {
        return Some(expired(d));
    }
    let held_until = tokio::time::Instant::now() + HOLD_MAX;
    let permit = match turn {
        Turn::Now => match target.try_permit() {
            Some(p) => Some(p),
            None => return Some(d.into_lane(source.event_json)),
        },
        Turn::Wait => tokio::select! {
            p = target.permit() => p,
            _ = tokio::time::sleep_until(held_until) => return Some(d.into_lane(source.event_json)),
            _ = halt.cancelled() => return None,
        },
    };

    // The rate limit after the permit, so a lane's deliveries keep their
    // order. Waiting for the bucket is not an attempt: it never counts
    // toward `max_attempts` or the circuit.
    if let Some(bucket) = &target.bucket {
        use std::sync::atomic::Ordering;
        match turn {
            Turn::Now => {
                // Behind the lane's deliveries waiting for a token, if any.
                if target.bucket_waiters.load(Ordering::Acquire) > 0 || bucket.check().is_err() {
                    return Some(d.into_lane(source.event_json));
                }
            }
            Turn::Wait => {
                let _waiting = Waiting::on(&target.bucket_waiters);
                tokio::select! {
                    _ = bucket.until_ready() => {}
                    _ = tokio::time::sleep_until(held_until) => return Some(d.into_lane(source.event_json)),
                    _ = halt.cancelled() => return None,
                }
            }
        }
    }

    let body = match render(&d, source) {
        Ok(body) => body,
        Err(e) => {
            tracing::warn!(event_id = %d.event.id, delivery_id = %d.id, integration = %target.integration.id, error = %e, "template failed; dead-lettering");
            return Some(d.dead(DeadReason::Template, e.to_string()));
        }
    };
    // The circuit last, just before the request: passing it may make this
    // attempt the probe, which must then go out.
    loop {
        // A wait in the lane is long enough for another copy of this job (a
        // hand-off whose confirm was lost, then made again) to finish first.
        // Looked at before the circuit, whose pass may make this the probe.
        if turn == Turn::Wait && crate::handoff::already_handled(&ctx.store, &d.id, d.hop) {
            target.metrics.outcome(Outcome::SkippedDuplicate);
            return Some(Step::Done);
        }
        match (target.circuit.gate(), turn) {
            (Gate::Pass, _) => break,
            (Gate::Open(_), Turn::Now) => return Some(d.into_lane(source.event_json)),
            (Gate::Open(wait), Turn::Wait) => {
                let now = tokio::time::Instant::now();
                if now >= held_until {
                    return Some(d.into_lane(source.event_json));
                }
                tokio::select! {
                    _ = tokio::time::sleep(wait.max(RECHECK_MIN).min(held_until - now)) => {}
                    _ = halt.cancelled() => return None,
                }
                if too_old() {
                    return Some(expired(d));
                }
            }
        }
    }
    let number = d.attempts + 1;
    // A reference count, not a copy: kept for the record should it fail.
    let sent = body.clone();
    let tried = attempt::send(&runtime.client, target, d.event, &d.id, number, body).await;
    drop(permit);
    Some(conclude(ctx, d, number, &tried, &sent))
}

/// Counts a delivery waiting for its bucket until dropped.
struct Waiting<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> Waiting<'a> {
    fn on(count: &'a std::sync::atomic::AtomicUsize) -> Waiting<'a> {
        count.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Waiting(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

fn expired(d: Delivery<'_>) -> Step {
    let detail = format!(
        "waited for its turn (its integration busy or its circuit open) past max_age; {} attempts made",
        d.attempts
    );
    d.dead(DeadReason::Expired, detail)
}

fn render(d: &Delivery<'_>, source: Source<'_>) -> Result<Bytes, alertpost_render::RenderError> {
    let integration = &d.target.integration;
    let extra = Extra {
        integration_id: &integration.id,
        integration_name: &integration.name,
        routing_key: integration.routing_key.as_ref().map(|k| k.expose()),
        delivery_id: &d.id,
    };
    match source.context {
        Some(context) => integration.body.render(context, source.event_json, &extra),
        None => Ok(source.event_json.clone()),
    }
}

/// Records the attempt and decides what follows it.
fn conclude(ctx: &Ctx, mut d: Delivery<'_>, number: u32, tried: &Tried, sent: &Bytes) -> Step {
    let target = d.target.clone();
    let started = OffsetDateTime::from(tried.attempt.started_at);
    let first = d.first_or(started);
    ctx.store.record(record(&d, number, tried, sent));
    let now = OffsetDateTime::now_utc();
    let decision = decide::decide(
        &tried.verdict,
        &target.integration.retry,
        number,
        first,
        now,
    );
    d.attempts = number;
    // An operational event's attempts change no state (no loops).
    let tracked = d.event.kind != crate::operational::KIND;
    if tracked && tried.opened_circuit {
        let last_error = match &tried.verdict {
            Verdict::Retry { reason, .. } => Some(reason.as_str()),
            _ => None,
        };
        ctx.operational.circuit_opened(
            &target.integration.id,
            target.integration.circuit.failures,
            last_error,
        );
    }
    match decision {
        Decision::Delivered => {
            if tracked {
                ctx.operational.delivered(&target.integration.id);
            }
            // Final: counted now; journaled by the hand-off before the ack.
            let m = &target.metrics;
            m.outcome(Outcome::Delivered);
            if let Some(received) = d.event.received_at {
                m.end_to_end
                    .observe((now - received).as_seconds_f64().max(0.0));
            }
            Step::Delivered(d.id)
        }
        Decision::Retry { due } => {
            // The job's history matters only if the delivery goes on.
            alertpost_event::job::push_history(&mut d.history, summary(number, tried));
            tracing::info!(delivery_id = %d.id, attempt = number, delay_ms = duration_ms((due - now).try_into().unwrap_or_default()), "retry scheduled");
            Step::Retry(Box::new(d.into_job(first, due)), target)
        }
        Decision::Dead { reason, detail } => {
            alertpost_event::job::push_history(&mut d.history, summary(number, tried));
            d.dead(reason, detail)
        }
    }
}

fn summary(attempt: u32, tried: &Tried) -> AttemptSummary {
    AttemptSummary {
        attempt,
        started_at: OffsetDateTime::from(tried.attempt.started_at),
        duration_ms: duration_ms(tried.attempt.duration),
        code: tried.attempt.result.code(),
        status: tried.attempt.result.status(),
        error: match &tried.verdict {
            Verdict::Delivered => None,
            Verdict::Retry { reason, .. } => Some(reason.clone()),
            Verdict::Dead { detail, .. } => Some(detail.clone()),
        },
    }
}

/// The store's record of an attempt.
fn record(d: &Delivery<'_>, attempt: u32, tried: &Tried, sent: &Bytes) -> AttemptRecord {
    let (headers, body) = match &tried.attempt.result {
        alertpost_deliver::Answer::Response(r) => (
            r.headers
                .iter()
                .map(|(n, v)| {
                    // Kept for operators to read: no session cookie or
                    // token a receiver hands back goes into the store.
                    let value = if alertpost_config::looks_secret(n.as_str()) {
                        "***".to_owned()
                    } else {
                        String::from_utf8_lossy(v.as_bytes()).into_owned()
                    };
                    (n.as_str().to_owned(), value)
                })
                .collect(),
            Some(stored_body(&r.body, &d.target.secrets)),
        ),
        _ => (Vec::new(), None),
    };
    let (outcome, error) = match &tried.verdict {
        Verdict::Delivered => (AttemptOutcome::Delivered, None),
        Verdict::Retry { reason, .. } => (AttemptOutcome::Retry, Some(reason.clone())),
        Verdict::Dead { detail, .. } => (AttemptOutcome::Dead, Some(detail.clone())),
    };
    AttemptRecord {
        delivery_id: d.id.clone(),
        event_id: d.event.id.clone(),
        integration: d.target.integration.id.clone(),
        attempt,
        started_at: OffsetDateTime::from(tried.attempt.started_at),
        duration_ms: duration_ms(tried.attempt.duration),
        outcome,
        code: tried.attempt.result.code(),
        status: tried.attempt.result.status(),
        response_headers: headers,
        response_body: body,
        error,
        request: (outcome != AttemptOutcome::Delivered).then(|| SentRequest {
            method: d.target.endpoint.method.as_str().to_owned(),
            url: alertpost_config::url_origin(&d.target.integration.url),
            body: stored_body(sent, &d.target.secrets),
        }),
    }
}
