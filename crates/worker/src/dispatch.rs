//! One message → its deliveries → the hand-off → the ack.
//!
//! [`handle`] never lets a message go unsettled while its channel lives:
//! - every delivery delivered → ack;
//! - a delivery dead (a 4xx, the policy) → its dead letter is published and
//!   confirmed, then the rest is settled as above or below;
//! - a delivery to retry → the message is requeued, to be delivered again
//!   (delivery limit: after too many, RabbitMQ moves it to the dead queue);
//! - a message that is not a valid event → dead letter with its bytes and
//!   the reason, confirmed, then ack: never back into the queue;
//! - a publish that cannot be confirmed → no ack: the message is requeued,
//!   or, with the connection gone, redelivered by the broker;
//! - a panic while handling → requeue, and the worker goes on.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use alertpost_broker::{Destination, Inbound, Outgoing, Publisher};
use alertpost_deliver::Verdict;
use alertpost_event::job::{AttemptSummary, DEAD_SCHEMA, DeadLetter, DeadReason, DeliveryJob};
use alertpost_event::{EVENT_SCHEMA, Event, delivery_id};
use alertpost_render::{Context, Extra};
use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::join_all;
use time::OffsetDateTime;
use tracing::Instrument;

use crate::delivery::{self, Tried, duration_ms};
use crate::runtime::{Current, Target};

/// What every dispatch shares.
#[derive(Debug)]
pub struct Ctx {
    /// The configuration in force; a message takes a snapshot.
    pub current: Current,
}

/// What became of one delivery.
enum Done {
    Delivered,
    Retry,
    /// Boxed: the letter carries the event, and most deliveries are not
    /// dead.
    Dead(Box<DeadLetter>),
}

/// How a message is settled with the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settle {
    Ack,
    Requeue,
}

/// Handles one message to the end; see the module docs for the contract.
pub async fn handle(ctx: Arc<Ctx>, publisher: Publisher, msg: Inbound) {
    let span = tracing::info_span!("message", queue = %msg.queue, message_id = msg.message_id.as_deref().unwrap_or(""));
    async move {
        // Boxed: the handling future is large, and the task that spawns
        // this one per message stays small and cheap to create.
        let settle = match AssertUnwindSafe(Box::pin(process(&ctx, &publisher, &msg)))
            .catch_unwind()
            .await
        {
            Ok(settle) => settle,
            Err(_) => {
                tracing::error!("handling the message panicked; requeueing it");
                Settle::Requeue
            }
        };
        let settled = match settle {
            Settle::Ack => msg.ack().await,
            Settle::Requeue => msg.requeue().await,
        };
        if let Err(e) = settled {
            // The channel is gone; the broker redelivers the message.
            tracing::warn!(error = %e, "cannot settle the message; it will be redelivered");
        }
    }
    .instrument(span)
    .await
}

async fn process(ctx: &Ctx, publisher: &Publisher, msg: &Inbound) -> Settle {
    let event = match decode(msg) {
        Ok(event) => event,
        Err(detail) => return undecodable(publisher, msg, detail).await,
    };
    let runtime = ctx.current.get();
    let targets: Vec<&Arc<Target>> = runtime.targets_for(&event).collect();
    if targets.is_empty() {
        tracing::debug!(event_id = %event.id, "no integration matches the event");
        return Settle::Ack;
    }
    // Built once per message, shared by every integration's rendering; the
    // context only when a template needs more than the event itself.
    let event_json = Bytes::from(event.to_json());
    let context = targets
        .iter()
        .any(|t| !t.integration.body.is_event())
        .then(|| Context::new(&event));
    let done = join_all(targets.iter().map(|target| {
        deliver(
            &runtime.client,
            target,
            &event,
            &event_json,
            context.as_ref(),
            &msg.queue,
        )
    }))
    .await;

    let mut settle = Settle::Ack;
    let mut dead = Vec::new();
    for d in done {
        match d {
            Done::Delivered => {}
            Done::Retry => settle = Settle::Requeue,
            Done::Dead(letter) => dead.push(*letter),
        }
    }
    if !publish_dead(publisher, &dead).await {
        return Settle::Requeue;
    }
    settle
}

/// Renders and makes the first attempt of one delivery.
async fn deliver(
    client: &alertpost_deliver::Client,
    target: &Target,
    event: &Event,
    event_json: &Bytes,
    context: Option<&Context>,
    queue: &str,
) -> Done {
    let integration = &target.integration;
    let id = delivery_id(&event.id, &integration.id);
    let extra = Extra {
        integration_id: &integration.id,
        integration_name: &integration.name,
        routing_key: integration.routing_key.as_ref().map(|k| k.expose()),
        delivery_id: &id,
    };
    let rendered = match context {
        Some(context) => integration.body.render(context, event_json, &extra),
        None => Ok(event_json.clone()),
    };
    let body = match rendered {
        Ok(body) => body,
        Err(e) => {
            tracing::warn!(event_id = %event.id, delivery_id = %id, integration = %integration.id, error = %e, "template failed; dead-lettering");
            let job = new_job(event, &integration.id, id, OffsetDateTime::now_utc());
            return Done::Dead(Box::new(dead_letter(
                job,
                DeadReason::Template,
                e.to_string(),
                queue,
            )));
        }
    };
    let tried = delivery::attempt(client, target, event, &id, 1, body).await;
    match &tried.verdict {
        Verdict::Delivered => Done::Delivered,
        Verdict::Retry { .. } => Done::Retry,
        Verdict::Dead { reason, detail } => {
            let mut job = new_job(
                event,
                &integration.id,
                id,
                OffsetDateTime::from(tried.attempt.started_at),
            );
            job.attempts = 1;
            job.record(summary(1, &tried));
            Done::Dead(Box::new(dead_letter(job, *reason, detail.clone(), queue)))
        }
    }
}

fn dead_letter(job: DeliveryJob, reason: DeadReason, detail: String, queue: &str) -> DeadLetter {
    DeadLetter {
        id: job.delivery_id.clone(),
        reason,
        detail,
        dead_at: OffsetDateTime::now_utc(),
        queue: queue.to_owned(),
        job: Some(job),
        raw: None,
        raw_base64: None,
    }
}

/// Reads an event message. `Err` carries why it is not one.
fn decode(msg: &Inbound) -> Result<Event, String> {
    match msg.kind.as_deref() {
        None | Some(EVENT_SCHEMA) => {}
        Some(other) => return Err(format!("unknown message type `{other}`")),
    }
    let mut event = Event::from_json(&msg.body).map_err(|e| e.to_string())?;
    event
        .prepare_received(&msg.body, OffsetDateTime::now_utc())
        .map_err(|e| format!("not a valid event: {e}"))?;
    Ok(event)
}

/// Sends a message that cannot be read to the dead queue, then acks it.
async fn undecodable(publisher: &Publisher, msg: &Inbound, detail: String) -> Settle {
    let id = msg
        .message_id
        .clone()
        .unwrap_or_else(|| format!("msg_{}", uuid_like(&msg.body)));
    tracing::warn!(%detail, "undecodable message; dead-lettering it");
    let letter = DeadLetter::undecodable(
        id,
        &msg.body,
        detail,
        msg.queue.clone(),
        OffsetDateTime::now_utc(),
    );
    if publish_dead(publisher, &[letter]).await {
        Settle::Ack
    } else {
        Settle::Requeue
    }
}

/// Publishes dead letters with pipelined confirms; true when all are
/// confirmed.
async fn publish_dead(publisher: &Publisher, letters: &[DeadLetter]) -> bool {
    let mut pending = Vec::with_capacity(letters.len());
    for letter in letters {
        let body = letter.to_json();
        let msg = Outgoing {
            body: &body,
            kind: DEAD_SCHEMA,
            message_id: &letter.id,
        };
        match publisher.send(&Destination::Dead, &msg).await {
            Ok(p) => pending.push(p),
            Err(e) => {
                tracing::error!(error = %e, "cannot publish a dead letter");
                return false;
            }
        }
    }
    let mut all = true;
    for p in pending {
        if let Err(e) = p.confirmed().await {
            tracing::error!(error = %e, "a dead letter was not confirmed");
            all = false;
        }
    }
    all
}

/// A delivery job before any attempt was recorded in it.
fn new_job(
    event: &Event,
    integration: &str,
    delivery_id: String,
    first: OffsetDateTime,
) -> DeliveryJob {
    DeliveryJob {
        delivery_id,
        integration: integration.to_owned(),
        attempts: 0,
        first_attempt_at: first,
        not_before: first,
        replayed: None,
        history: Vec::new(),
        event: event.clone(),
    }
}

fn summary(attempt: u32, tried: &Tried) -> AttemptSummary {
    AttemptSummary {
        attempt,
        started_at: OffsetDateTime::from(tried.attempt.started_at),
        duration_ms: duration_ms(tried.attempt.duration),
        code: tried.attempt.result.code().to_owned(),
        status: tried.attempt.result.status(),
        error: match &tried.verdict {
            Verdict::Delivered => None,
            Verdict::Retry { reason, .. } => Some(reason.clone()),
            Verdict::Dead { detail, .. } => Some(detail.clone()),
        },
    }
}

/// A short stable id for a message that has none.
fn uuid_like(bytes: &[u8]) -> String {
    // FNV-1a: stable across runs, good enough to tell dead letters apart.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}
