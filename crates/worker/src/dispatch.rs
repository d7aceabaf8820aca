//! One message → its deliveries → the hand-off → the ack.
//!
//! A message is an event (from `<prefix>.events`: a first attempt for each
//! integration it matches) or a delivery job (from `<prefix>.deliveries`:
//! one more attempt of one delivery). Each delivery comes to a [`Step`]:
//! done, wait in a delay tier, or dead. Then, in [`handoff`]:
//! - every delay-tier job and dead letter is published, and confirmed;
//! - only then is the message acked;
//! - a publish that is not confirmed leaves the message requeued, to be
//!   handled again: what was already delivered is skipped (the journal),
//!   the rest is tried again.
//!
//! A message that is not a valid event or job goes to the dead queue with
//! its bytes and the reason (confirmed), then is acked: never back into the
//! queue. A panic while handling requeues the message and the worker goes on.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use alertpost_broker::topology::tier_name;
use alertpost_broker::{Inbound, Publisher, Topology};
use alertpost_deliver::Verdict;
use alertpost_event::job::{
    AttemptSummary, DeadLetter, DeadReason, DeliveryJob, JOB_SCHEMA, Replay,
};
use alertpost_event::{EVENT_SCHEMA, Event, delivery_id};
use alertpost_render::{Context, Extra};
use alertpost_store::{AttemptRecord, Finished, Store};
use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::join_all;
use time::OffsetDateTime;
use tracing::Instrument;

use crate::delivery::{self, Tried, duration_ms};
use crate::handoff;
use crate::runtime::{Current, Runtime, Target};
use crate::schedule::{self, Next};
use alertpost_metrics::WorkerMetrics;

/// A job due this soon is tried now rather than sent round another tier.
const HOP_SLACK: Duration = Duration::from_millis(250);

/// Bytes of a response body kept in the store.
const STORED_BODY: usize = 4096;

/// What every dispatch shares.
#[derive(Debug)]
pub struct Ctx {
    /// The configuration in force; a message takes a snapshot.
    pub current: Current,
    pub store: Store,
    /// Names the delay tiers jobs wait in.
    pub topology: Topology,
    pub metrics: WorkerMetrics,
}

/// How a message is settled with the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settle {
    Ack,
    Requeue,
}

/// What one delivery comes to.
pub(crate) enum Step {
    /// Delivered now, or found finished in the journal and not sent again.
    Done,
    /// To wait in the delay tier `tier`, then be tried again.
    Retry {
        job: Box<DeliveryJob>,
        tier: Duration,
    },
    /// Given up: to the dead queue.
    Dead(Box<DeadLetter>),
}

enum Work {
    /// The event, and the message's bytes when they encode it as it is
    /// (then they are the `alertpost` body, without encoding it again).
    Event(Box<Event>, Option<Bytes>),
    Job(Box<DeliveryJob>),
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
    match decode(msg, &ctx.topology) {
        Err(detail) => undecodable(ctx, publisher, msg, detail).await,
        Ok(Work::Event(event, raw)) => event_message(ctx, publisher, msg, *event, raw).await,
        Ok(Work::Job(job)) => job_message(ctx, publisher, msg, *job).await,
    }
}

/// First attempts: one per integration the event matches.
async fn event_message(
    ctx: &Ctx,
    publisher: &Publisher,
    msg: &Inbound,
    event: Event,
    raw: Option<Bytes>,
) -> Settle {
    ctx.metrics.consumed(&event.source);
    let runtime = ctx.current.get();
    let targets: Vec<&Arc<Target>> = runtime.targets_for(&event);
    if targets.is_empty() {
        tracing::debug!(event_id = %event.id, "no integration matches the event");
        return Settle::Ack;
    }
    // Built once per message, shared by every integration's rendering; the
    // context only when a template needs more than the event itself.
    let event_json = raw.unwrap_or_else(|| Bytes::from(event.to_json()));
    let context = targets
        .iter()
        .any(|t| !t.integration.body.is_event())
        .then(|| Context::new(&event));
    let steps = join_all(targets.iter().map(|target| {
        let d = Delivery {
            event: &event,
            target,
            id: delivery_id(&event.id, &target.integration.id),
            attempts: 0,
            first_attempt_at: None,
            history: Vec::new(),
            replayed: None,
        };
        // Only a redelivered message can hold a delivery already finished.
        let check_journal = msg.redelivered;
        let runtime = &runtime;
        let (event_json, context) = (&event_json, context.as_ref());
        async move {
            if check_journal && already_finished(&ctx.store, &d.id, None) {
                d.target.metrics.outcome("skipped_duplicate");
                return Step::Done;
            }
            // Boxed: `join_all` keeps its futures side by side, and an
            // attempt's state (the HTTP exchange) is large to move around.
            Box::pin(attempt(ctx, runtime, d, event_json, context, &msg.queue)).await
        }
    }))
    .await;
    handoff::hand_off(ctx, publisher, steps).await
}

/// One more attempt of one delivery.
async fn job_message(ctx: &Ctx, publisher: &Publisher, msg: &Inbound, job: DeliveryJob) -> Settle {
    let now = OffsetDateTime::now_utc();
    // A delay longer than the largest tier takes several hops.
    let remaining: Duration = (job.not_before - now).try_into().unwrap_or(Duration::ZERO);
    if remaining > HOP_SLACK {
        let tier = ctx.topology.tier_for(remaining);
        tracing::debug!(delivery_id = %job.delivery_id, remaining_s = remaining.as_secs(), "not due yet; another hop");
        let step = Step::Retry {
            job: Box::new(job),
            tier,
        };
        return handoff::hand_off(ctx, publisher, vec![step]).await;
    }
    let runtime = ctx.current.get();
    let Some(target) = runtime.target(&job.integration) else {
        let detail = format!(
            "integration `{}` is not in the configuration (or not enabled)",
            job.integration
        );
        tracing::warn!(delivery_id = %job.delivery_id, %detail, "dead-lettering a delivery job");
        ctx.metrics.dead_unknown(&job.integration);
        let letter = dead_letter(job, DeadReason::Unknown, detail, &msg.queue);
        return handoff::hand_off(ctx, publisher, vec![Step::Dead(Box::new(letter))]).await;
    };
    if already_finished(&ctx.store, &job.delivery_id, job.replayed.as_ref()) {
        target.metrics.outcome("skipped_duplicate");
        return handoff::hand_off(ctx, publisher, vec![Step::Done]).await;
    }
    let event_json = Bytes::from(job.event.to_json());
    let context = (!target.integration.body.is_event()).then(|| Context::new(&job.event));
    let d = Delivery {
        event: &job.event,
        target,
        id: job.delivery_id.clone(),
        attempts: job.attempts,
        first_attempt_at: Some(job.first_attempt_at),
        history: job.history.clone(),
        replayed: job.replayed.clone(),
    };
    let step = attempt(ctx, &runtime, d, &event_json, context.as_ref(), &msg.queue).await;
    handoff::hand_off(ctx, publisher, vec![step]).await
}

/// Whether the journal says this delivery is finished: delivered, or dead
/// (unless this is a replay of the dead one).
fn already_finished(store: &Store, id: &str, replayed: Option<&Replay>) -> bool {
    match store.finished(id).map(|j| j.outcome) {
        Some(Finished::Delivered) => true,
        Some(Finished::Dead) => replayed.is_none(),
        None => false,
    }
}

/// One delivery in progress.
struct Delivery<'a> {
    event: &'a Event,
    target: &'a Target,
    id: String,
    /// Attempts made before this one.
    attempts: u32,
    /// `None`: this is the first attempt.
    first_attempt_at: Option<OffsetDateTime>,
    history: Vec<AttemptSummary>,
    replayed: Option<Replay>,
}

impl Delivery<'_> {
    /// The job of this delivery, for a delay tier or the dead queue.
    fn into_job(self, first_attempt_at: OffsetDateTime) -> DeliveryJob {
        DeliveryJob {
            delivery_id: self.id,
            integration: self.target.integration.id.clone(),
            attempts: self.attempts,
            first_attempt_at,
            not_before: first_attempt_at,
            replayed: self.replayed,
            history: self.history,
            event: self.event.clone(),
        }
    }
}

/// Renders, attempts, records, and decides what comes next.
async fn attempt(
    ctx: &Ctx,
    runtime: &Runtime,
    mut d: Delivery<'_>,
    event_json: &Bytes,
    context: Option<&Context>,
    queue: &str,
) -> Step {
    let integration = &d.target.integration;
    let extra = Extra {
        integration_id: &integration.id,
        integration_name: &integration.name,
        routing_key: integration.routing_key.as_ref().map(|k| k.expose()),
        delivery_id: &d.id,
    };
    let rendered = match context {
        Some(context) => integration.body.render(context, event_json, &extra),
        None => Ok(event_json.clone()),
    };
    let body = match rendered {
        Ok(body) => body,
        Err(e) => {
            tracing::warn!(event_id = %d.event.id, delivery_id = %d.id, integration = %integration.id, error = %e, "template failed; dead-lettering");
            d.target.metrics.outcome("dead");
            d.target.metrics.dead(DeadReason::Template);
            let first = d.first_attempt_at.unwrap_or_else(OffsetDateTime::now_utc);
            let letter = dead_letter(
                d.into_job(first),
                DeadReason::Template,
                e.to_string(),
                queue,
            );
            return Step::Dead(Box::new(letter));
        }
    };
    let m = &d.target.metrics;
    let number = d.attempts + 1;
    let tried =
        match delivery::attempt(&runtime.client, d.target, d.event, &d.id, number, body).await {
            Ok(tried) => tried,
            Err(remaining) => return held_back(ctx, d, remaining, queue),
        };
    let started = OffsetDateTime::from(tried.attempt.started_at);
    let first = d.first_attempt_at.unwrap_or(started);
    ctx.store.record(record(&d, number, &tried));
    d.attempts = number;
    // The job's history matters only if the delivery goes on (or dies).
    if !matches!(tried.verdict, Verdict::Delivered) {
        alertpost_event::job::push_history(&mut d.history, summary(number, &tried));
    }
    // Counted once, here, after classification.
    match tried.verdict {
        Verdict::Delivered => {
            ctx.store.finish(&d.id, Finished::Delivered);
            m.outcome("delivered");
            if let Some(received) = d.event.received_at {
                let age = OffsetDateTime::now_utc() - received;
                m.end_to_end.observe(age.as_seconds_f64().max(0.0));
            }
            Step::Done
        }
        Verdict::Dead { reason, detail } => {
            m.outcome("dead");
            m.dead(reason);
            Step::Dead(Box::new(dead_letter(
                d.into_job(first),
                reason,
                detail,
                queue,
            )))
        }
        Verdict::Retry {
            reason,
            retry_after,
        } => {
            let now = OffsetDateTime::now_utc();
            let policy = &integration.retry;
            match schedule::next(policy, number, first, now, retry_after) {
                Next::RetryIn(delay) => {
                    let tier = ctx.topology.tier_for(delay);
                    let mut job = d.into_job(first);
                    job.not_before = now + delay;
                    tracing::info!(delivery_id = %job.delivery_id, attempt = number, delay_ms = duration_ms(delay), tier_s = tier.as_secs(), "retry scheduled");
                    retried(ctx, m, tier);
                    Step::Retry {
                        job: Box::new(job),
                        tier,
                    }
                }
                Next::Exhausted => {
                    m.outcome("dead");
                    m.dead(DeadReason::Exhausted);
                    let detail = format!("gave up after {number} attempts; last: {reason}");
                    Step::Dead(Box::new(dead_letter(
                        d.into_job(first),
                        DeadReason::Exhausted,
                        detail,
                        queue,
                    )))
                }
                Next::Expired => {
                    m.outcome("dead");
                    m.dead(DeadReason::Expired);
                    let detail = format!(
                        "the next try would come more than {} after the first; last: {reason}",
                        tier_name(policy.max_age)
                    );
                    Step::Dead(Box::new(dead_letter(
                        d.into_job(first),
                        DeadReason::Expired,
                        detail,
                        queue,
                    )))
                }
            }
        }
    }
}

/// The circuit is open: no request; straight to a delay tier for the rest
/// of the cooldown (at least the first retry delay), or dead if that would
/// pass `max_age`.
fn held_back(ctx: &Ctx, d: Delivery<'_>, remaining: Duration, queue: &str) -> Step {
    let m = &d.target.metrics;
    let now = OffsetDateTime::now_utc();
    let first = d.first_attempt_at.unwrap_or(now);
    let policy = d.target.integration.retry;
    let delay = remaining.max(policy.initial);
    if now + delay > first + policy.max_age {
        let detail = "the circuit is open and the next try would come after max_age".to_owned();
        m.outcome("dead");
        m.dead(DeadReason::Expired);
        return Step::Dead(Box::new(dead_letter(
            d.into_job(first),
            DeadReason::Expired,
            detail,
            queue,
        )));
    }
    let tier = ctx.topology.tier_for(delay);
    retried(ctx, m, tier);
    let mut job = d.into_job(first);
    job.not_before = now + delay;
    Step::Retry {
        job: Box::new(job),
        tier,
    }
}

fn retried(ctx: &Ctx, m: &alertpost_metrics::IntegrationMetrics, tier: Duration) {
    m.outcome("retried");
    if let Some(i) = ctx.topology.tiers().iter().position(|t| *t == tier) {
        m.retry(i);
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

/// Reads an event or a job: by the message's type, else by its queue.
fn decode(msg: &Inbound, topology: &Topology) -> Result<Work, String> {
    let is_job = match msg.kind.as_deref() {
        Some(EVENT_SCHEMA) => false,
        Some(JOB_SCHEMA) => true,
        None => msg.queue == topology.deliveries_queue(),
        Some(other) => return Err(format!("unknown message type `{other}`")),
    };
    if is_job {
        let job: DeliveryJob = serde_json::from_slice(&msg.body)
            .map_err(|e| format!("not a valid {JOB_SCHEMA} delivery job: {e}"))?;
        return Ok(Work::Job(Box::new(job)));
    }
    let mut event = Event::from_json(&msg.body).map_err(|e| e.to_string())?;
    let unchanged = event
        .prepare_received(&msg.body, OffsetDateTime::now_utc())
        .map_err(|e| format!("not a valid event: {e}"))?;
    let raw = unchanged.then(|| msg.body.clone());
    Ok(Work::Event(Box::new(event), raw))
}

/// Sends a message that cannot be read to the dead queue, then acks it.
async fn undecodable(ctx: &Ctx, publisher: &Publisher, msg: &Inbound, detail: String) -> Settle {
    let id = msg
        .message_id
        .clone()
        .unwrap_or_else(|| format!("msg_{}", fnv(&msg.body)));
    tracing::warn!(%detail, "undecodable message; dead-lettering it");
    ctx.metrics.undecodable();
    let letter = DeadLetter::undecodable(
        id,
        &msg.body,
        detail,
        msg.queue.clone(),
        OffsetDateTime::now_utc(),
    );
    handoff::hand_off(ctx, publisher, vec![Step::Dead(Box::new(letter))]).await
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

/// The store's record of an attempt.
fn record(d: &Delivery<'_>, attempt: u32, tried: &Tried) -> AttemptRecord {
    let (headers, body) = match &tried.attempt.result {
        alertpost_deliver::AttemptResult::Response(r) => (
            r.headers
                .iter()
                .map(|(n, v)| {
                    (
                        n.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            Some(String::from_utf8_lossy(&r.body[..r.body.len().min(STORED_BODY)]).into_owned()),
        ),
        _ => (Vec::new(), None),
    };
    let (outcome, error) = match &tried.verdict {
        Verdict::Delivered => ("delivered", None),
        Verdict::Retry { reason, .. } => ("retry", Some(reason.clone())),
        Verdict::Dead { detail, .. } => ("dead", Some(detail.clone())),
    };
    AttemptRecord {
        delivery_id: d.id.clone(),
        event_id: d.event.id.clone(),
        integration: d.target.integration.id.clone(),
        attempt,
        started_at: OffsetDateTime::from(tried.attempt.started_at),
        duration_ms: duration_ms(tried.attempt.duration),
        outcome: outcome.to_owned(),
        code: tried.attempt.result.code().to_owned(),
        status: tried.attempt.result.status(),
        response_headers: headers,
        response_body: body,
        error,
    }
}

/// A short stable id for a message that has none (FNV-1a).
fn fnv(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}
