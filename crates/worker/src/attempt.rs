//! One HTTP attempt of one delivery: send, classify, log, report to the
//! circuit. The caller holds the integration's permit and has passed its
//! circuit.

use std::time::Duration;

use alertpost_deliver::{Client, Exchange, RequestMeta, Verdict, classify};
use alertpost_event::Event;
use bytes::Bytes;
use tracing::Instrument;

use crate::runtime::Target;

/// What one attempt did and what it means.
#[derive(Debug)]
pub struct Tried {
    pub attempt: Exchange,
    pub verdict: Verdict,
    /// This attempt opened its integration's circuit.
    pub opened_circuit: bool,
}

/// Makes attempt number `number` of delivering `body` (the rendered event)
/// to `target`. Counted here, once per attempt, by its code.
pub async fn send(
    client: &Client,
    target: &Target,
    event: &Event,
    delivery_id: &str,
    number: u32,
    body: Bytes,
) -> Tried {
    let integration = &target.integration;
    let span = tracing::info_span!(
        "delivery",
        event_id = %event.id,
        delivery_id = %delivery_id,
        integration = %integration.id,
        attempt = number,
    );
    async move {
        let meta = RequestMeta::now(delivery_id, &event.id, number);
        let m = &target.metrics;
        let in_flight = InFlight::new(&m.inflight);
        let attempt = client.deliver(&target.endpoint, body, &meta).await;
        drop(in_flight);
        m.attempt(attempt.result.code());
        m.duration.observe(attempt.duration.as_secs_f64());
        let mut verdict = classify(&attempt.result, &target.endpoint.validate);
        // What the receiver said goes on into logs, records, histories and
        // dead letters: without the secrets it may echo.
        if !target.secrets.is_empty() {
            match &mut verdict {
                Verdict::Delivered => {}
                Verdict::Retry { reason: text, .. } | Verdict::Dead { detail: text, .. } => {
                    *text = alertpost_config::mask(text, &target.secrets);
                }
            }
        }
        log(&attempt, &verdict);
        let now = time::OffsetDateTime::now_utc();
        match &verdict {
            Verdict::Delivered => target.seen.delivered(now),
            Verdict::Retry { reason, .. } => target.seen.failed(now, reason),
            Verdict::Dead { reason, detail } => {
                target.seen.failed(now, &format!("{reason}: {detail}"))
            }
        }
        let circuit = target
            .circuit
            .report(matches!(verdict, Verdict::Retry { .. }));
        m.circuit_open.set(i64::from(circuit.open));
        Tried {
            attempt,
            verdict,
            opened_circuit: circuit.opened,
        }
    }
    .instrument(span)
    .await
}

/// Counts an attempt in flight until dropped, also when its task is
/// cancelled mid-request (a drain deadline).
struct InFlight<'a>(&'a prometheus::IntGauge);

impl<'a> InFlight<'a> {
    fn new(gauge: &'a prometheus::IntGauge) -> InFlight<'a> {
        gauge.inc();
        InFlight(gauge)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

fn log(attempt: &Exchange, verdict: &Verdict) {
    let ms = duration_ms(attempt.duration);
    let status = attempt.result.status();
    match verdict {
        Verdict::Delivered => {
            tracing::info!(outcome = "delivered", status, duration_ms = ms, "delivered")
        }
        Verdict::Retry { reason, .. } => {
            tracing::warn!(outcome = "retry", status, duration_ms = ms, %reason, "attempt failed; will retry")
        }
        Verdict::Dead { reason, detail } => tracing::warn!(
            outcome = "dead",
            status,
            duration_ms = ms,
            reason = %reason,
            %detail,
            "attempt failed for good; dead-lettering"
        ),
    }
}

pub(crate) fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
