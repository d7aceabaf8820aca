//! The observer: what a delivery's attempts and hand-offs change besides
//! the delivery itself, in one place: the attempt's record in the store,
//! the metrics, the circuit, the integration's state (and the operational
//! events it raises), its last success and failure, the dead letters kept.
//! The stages and the hand-off tell it what happened; it decides nothing
//! about the delivery. Not here: the journal (on the ack path, in the
//! hand-off), and the count of attempts in flight (it wraps the request,
//! in the attempt).

use std::time::Duration;

use alertpost_deliver::{Answer, Verdict};
use alertpost_event::Position;
use alertpost_event::job::AttemptCode;
use alertpost_metrics::Outcome;
use alertpost_store::{AttemptOutcome, AttemptRecord, SentRequest};
use bytes::Bytes;
use time::OffsetDateTime;

use crate::attempt::{Tried, duration_ms};
use crate::circuit::Reported;
use crate::decide::Decision;
use crate::delivery::Delivery;
use crate::runtime::{Ctx, Runtime};
use crate::step::Step;
use crate::target::Target;

/// Bytes of a response body kept in the store.
const STORED_BODY: usize = 4096;

/// An event its integration does not take (its filter, `send_resolved`).
pub(crate) fn filtered(target: &Target) {
    target.metrics.outcome(Outcome::Filtered);
}

/// A delivery found done in the journal: nothing was done again.
pub(crate) fn skipped(target: &Target) {
    target.metrics.outcome(Outcome::SkippedDuplicate);
}

/// A delivery found done in the journal, by its integration's id (that of
/// a job whose integration may have left the config).
pub(crate) fn skipped_job(runtime: &Runtime, integration: &str) {
    if let Some(target) = runtime.target(integration) {
        skipped(target);
    }
}

/// `d` was superseded by a newer event of its alert (`newer`, as far as
/// it is known): counted, and recorded with the attempts it made (0: its
/// receiver never heard of it).
pub(crate) fn superseded(ctx: &Ctx, d: &Delivery<'_>, newer: Option<&Position>) {
    d.target.metrics.outcome(Outcome::Superseded);
    let by = newer.map_or_else(|| "a newer event".to_owned(), |p| format!("event {}", p.id));
    tracing::info!(event_id = %d.event.id, delivery_id = %d.id, integration = %d.target.integration.id, attempts = d.attempts, superseded_by = %by, "superseded by a newer event of its alert");
    ctx.store.record(AttemptRecord {
        delivery_id: d.id.clone(),
        event_id: d.event.id.clone(),
        integration: d.target.integration.id.clone(),
        attempt: d.attempts,
        started_at: OffsetDateTime::now_utc(),
        duration_ms: 0,
        outcome: AttemptOutcome::Superseded,
        code: AttemptCode::Superseded,
        status: None,
        response_headers: Vec::new(),
        response_body: None,
        error: Some(format!(
            "superseded by {by} of its alert; {}",
            if d.attempts == 0 {
                "never sent".to_owned()
            } else {
                format!("{} attempts made, not tried again", d.attempts)
            }
        )),
        request: None,
    });
}

/// An attempt to `target` ended: counted, timed, told to the circuit,
/// and its integration's last success or failure. Called while the
/// attempt's turn is held, so that the circuit hears of a failure before
/// another delivery can pass it.
pub(crate) fn attempted(target: &Target, tried: &Tried) -> Reported {
    let m = &target.metrics;
    m.attempt(tried.exchange.result.code());
    m.duration.observe(tried.exchange.duration.as_secs_f64());
    let now = OffsetDateTime::now_utc();
    match &tried.verdict {
        Verdict::Delivered => target.seen.delivered(now),
        Verdict::Retry { reason, .. } => target.seen.failed(now, reason),
        Verdict::Dead { reason, detail } => target.seen.failed(now, &format!("{reason}: {detail}")),
    }
    let circuit = target
        .circuit
        .report(matches!(tried.verdict, Verdict::Retry { .. }));
    m.circuit_open.set(i64::from(circuit.open));
    circuit
}

/// An attempt, decided.
pub(crate) struct Concluded<'a> {
    pub number: u32,
    pub tried: &'a Tried,
    /// When it started (its exchange's start, on the wall clock).
    pub started: OffsetDateTime,
    /// The body it sent.
    pub sent: &'a Bytes,
    pub decision: &'a Decision,
    /// What it did to the circuit ([`attempted`]).
    pub circuit: Reported,
    /// When it was decided.
    pub now: OffsetDateTime,
}

/// An attempt of `d` was decided: its record, the integration's state (a
/// circuit the attempt opened, a delivery made), the delivered count and
/// the time from `received_at`.
pub(crate) fn concluded(ctx: &Ctx, d: &Delivery<'_>, attempt: Concluded<'_>) {
    let Concluded {
        number,
        tried,
        started,
        sent,
        decision,
        circuit,
        now,
    } = attempt;
    let target = d.target;
    let m = &target.metrics;
    ctx.store.record(record(d, number, tried, started, sent));
    // An operational event's attempts change no state (no loops).
    let tracked = d.event.kind != crate::operational::KIND;
    if tracked && circuit.opened {
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
            m.outcome(Outcome::Delivered);
            if let Some(received) = d.event.received_at {
                m.end_to_end
                    .observe((now - received).as_seconds_f64().max(0.0));
            }
        }
        Decision::Retry { due } => {
            let delay = duration_ms((*due - now).try_into().unwrap_or_default());
            tracing::info!(delivery_id = %d.id, attempt = number, delay_ms = delay, "retry scheduled");
        }
        Decision::Dead { .. } => {}
    }
}

/// A step was handed on: published, confirmed and journaled. Counted once
/// per step, here; a dead letter is kept in the store.
pub(crate) async fn handed_on(ctx: &Ctx, step: Step) {
    match step {
        Step::Done
        | Step::Delivered(_)
        | Step::Superseded(_)
        | Step::Rewait(_)
        | Step::Forward(_) => {}
        Step::Lane(_, target) | Step::Defer(_, target) => {
            target.metrics.outcome(Outcome::Deferred);
        }
        Step::Retry(job, target) => {
            target.metrics.outcome(Outcome::Retried);
            let wait = (job.not_before - OffsetDateTime::now_utc())
                .try_into()
                .unwrap_or(Duration::ZERO);
            target
                .metrics
                .retry(alertpost_seam::topology::tier_index(&ctx.tiers, wait));
        }
        Step::Dead(letter, target) => {
            match (&target, &letter.job) {
                (Some(t), job) => {
                    t.metrics.outcome(Outcome::Dead);
                    t.metrics.dead(letter.reason);
                    if let Some(job) = job {
                        ctx.operational.dead_lettered(
                            &t.integration.id,
                            &job.event.kind,
                            t.circuit.is_open(),
                            letter.reason.as_str(),
                            &letter.detail,
                        );
                    }
                }
                (None, Some(job)) => ctx.metrics.dead_elsewhere(&job.integration, letter.reason),
                (None, None) => ctx.metrics.undecodable(),
            }
            // A sled insert: on the blocking pool, not a runtime thread
            // (dead letters are rare).
            let store = ctx.store.clone();
            match tokio::task::spawn_blocking(move || store.record_dead(&letter)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cannot record a dead letter in the store")
                }
                Err(e) => tracing::warn!(error = %e, "recording a dead letter failed"),
            }
        }
    }
}

/// The store's record of attempt `attempt` of `d`, started at `started`.
fn record(
    d: &Delivery<'_>,
    attempt: u32,
    tried: &Tried,
    started: OffsetDateTime,
    sent: &Bytes,
) -> AttemptRecord {
    let (headers, body) = match &tried.exchange.result {
        Answer::Response(r) => (
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
        started_at: started,
        duration_ms: duration_ms(tried.exchange.duration),
        outcome,
        code: tried.exchange.result.code(),
        status: tried.exchange.result.status(),
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

/// The start of a body as kept: masked whole, then cut, so no secret is
/// cut in two and half kept.
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
