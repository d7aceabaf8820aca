//! The attempt stage: one HTTP exchange of one delivery, classified, its
//! receiver's words masked, logged. The caller holds the delivery's turn
//! (its permit, and its circuit's leave); what the attempt changes (the
//! record, the metrics, the circuit, the integration's state) is the
//! observer's.

use std::time::Duration;

use alertpost_deliver::{Client, Exchange, RequestMeta, Verdict, classify};
use alertpost_event::Event;
use bytes::Bytes;
use tracing::Instrument;

use crate::target::Target;

/// What one attempt did and what it means.
#[derive(Debug)]
pub struct Tried {
    pub exchange: Exchange,
    pub verdict: Verdict,
}

/// Makes attempt number `number` of delivering `body` (the rendered event)
/// to `target`.
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
        let in_flight = InFlight::new(&target.metrics.inflight);
        let exchange = client.deliver(&target.endpoint, body, &meta).await;
        drop(in_flight);
        let mut verdict = classify(&exchange.result, &target.endpoint.validate);
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
        log(&exchange, &verdict);
        Tried { exchange, verdict }
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

fn log(exchange: &Exchange, verdict: &Verdict) {
    let ms = duration_ms(exchange.duration);
    let status = exchange.result.status();
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
