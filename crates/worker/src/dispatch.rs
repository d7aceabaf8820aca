//! One message → its deliveries → the hand-off → settled.
//!
//! A message is an event (from the events stream or its alert's shard: a
//! first attempt for each integration it matches, each starting now or
//! going to its lane) or a delivery job (one more attempt of one delivery:
//! back from a wait, a replay, or its turn in its lane). An alert's event
//! or job found anywhere but its shard goes there first
//! ([`crate::shard`]). Each delivery comes to a [`Step`],
//! which [`handoff`](crate::handoff) carries on as soon as it is known (a
//! delivery never waits for its siblings' attempts); the message is acked
//! once every one is carried on.
//!
//! Before anything is done for a delivery, the journal is consulted
//! (whatever the broker's redelivery flag says): what was delivered, dead,
//! or handed on from this hop is not done again.
//!
//! A message that is not a valid event or job goes to the dead queue with
//! its bytes and the reason (confirmed), then is acked: never back into the
//! queue. A panic while handling requeues the message and the worker goes on.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use alertpost_event::job::{DEAD_SCHEMA, DeadLetter, DeadReason, DeliveryJob, JOB_SCHEMA};
use alertpost_event::message::Message;
use alertpost_event::{EVENT_SCHEMA, Event, delivery_id};
use alertpost_render::Context;
use alertpost_seam::{Inbound, Session, Source};
use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::join_all;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::delivery::Delivery;
use crate::handoff::{self, Settle};
use crate::link::Link;
use crate::render::Rendering;
use crate::runtime::{Ctx, Runtime};
use crate::step::Step;
use crate::turn::Turn;

/// A job due this soon is tried now rather than sent round another wait.
const DUE_SLACK: Duration = Duration::from_millis(250);

enum Work {
    /// The event, and the message's bytes when they encode it as it is
    /// (then they are the `alertpost` body, without encoding it again).
    Event(Box<Event>, Option<Bytes>),
    /// One job, or a lane's batch of them.
    Jobs(Vec<DeliveryJob>),
}

/// Handles one message to the end; see the module docs for the contract.
/// `halt`: when it comes, a delivery still waiting its lane's turn gives
/// up and its message goes back (the session stops, or the lane's consumer
/// is replaced).
pub(crate) async fn handle<S: Session>(
    ctx: Arc<Ctx>,
    link: Arc<Link<S>>,
    msg: Inbound,
    halt: CancellationToken,
) {
    let span = tracing::info_span!("message", queue = %msg.queue, message_id = msg.message_id.as_deref().unwrap_or(""));
    async move {
        // Boxed: the handling future is large, and the task that spawns
        // this one per message stays small and cheap to create.
        let settle = match AssertUnwindSafe(Box::pin(process(&ctx, &link, &msg, &halt)))
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
            Settle::Requeue => {
                ctx.metrics.requeued.inc();
                msg.requeue().await
            }
        };
        if let Err(e) = settled {
            // The channel is gone; the broker hands the message out again.
            tracing::warn!(error = %e, "cannot settle the message; it will be redelivered");
        }
    }
    .instrument(span)
    .await
}

async fn process<S: Session>(
    ctx: &Ctx,
    link: &Link<S>,
    msg: &Inbound,
    halt: &CancellationToken,
) -> Settle {
    match decode(msg) {
        Err(detail) => undecodable(ctx, link, msg, detail).await,
        Ok(Work::Event(event, raw)) => {
            match crate::shard::of_event(link.session.sharded(), &msg.source, &event) {
                Some(n) => {
                    let forward = crate::shard::event(&event, raw, n);
                    handoff::hand_off(ctx, link, msg, Step::Forward(Box::new(forward))).await
                }
                None => event_message(ctx, link, msg, *event, raw, halt).await,
            }
        }
        Ok(Work::Jobs(jobs)) => jobs_message(ctx, link, msg, jobs, halt).await,
    }
}

/// First attempts: one per integration the event matches.
async fn event_message<S: Session>(
    ctx: &Ctx,
    link: &Link<S>,
    msg: &Inbound,
    event: Event,
    raw: Option<Bytes>,
    halt: &CancellationToken,
) -> Settle {
    ctx.metrics.consumed(&event.source);
    let runtime = ctx.current.get();
    let targets = crate::matching::targets_for(&runtime, &event);
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
    let from = Rendering {
        event_json: &event_json,
        context: context.as_ref(),
    };
    let settles = join_all(targets.iter().map(|target| {
        let id = delivery_id(&event.id, &target.integration.id);
        let (runtime, event) = (&runtime, &event);
        async move {
            if crate::journal::already_handled(&ctx.store, &id, 0) {
                crate::observe::skipped(target);
                return Settle::Ack;
            }
            let d = Delivery::first(event, target, id, msg);
            // Boxed: `join_all` keeps its futures side by side, and an
            // attempt's state (the HTTP exchange) is large to move around.
            let step = Box::pin(crate::stages::run(
                ctx,
                &runtime.client,
                d,
                from,
                Turn::Now,
                halt,
            ));
            Box::pin(carry_on(ctx, link, msg, step)).await
        }
    }))
    .await;
    settled(&settles)
}

/// Hands off what one delivery came to as soon as it is known, not after
/// the message's other deliveries: one sent to its lane (or to a wait)
/// must not wait for another integration's slow attempt on the same
/// message (measured: a healthy delivery deferred beside a black hole came
/// at the black hole's timeout). One that gave up waiting (only a lane's
/// do: the session stops) did nothing: the message goes back, and the
/// others, journaled, are skipped next time; so does one that panicked,
/// caught here so that it cannot cut short a sibling's hand-off between
/// its publish and its journaling (that hand-off would be made twice).
async fn carry_on<S: Session>(
    ctx: &Ctx,
    link: &Link<S>,
    msg: &Inbound,
    step: impl Future<Output = Option<Step>>,
) -> Settle {
    let step = match AssertUnwindSafe(step).catch_unwind().await {
        Ok(step) => step,
        Err(_) => {
            tracing::error!("a delivery panicked; its message goes back");
            None
        }
    };
    match step {
        Some(step) => handoff::hand_off(ctx, link, msg, step).await,
        None => Settle::Requeue,
    }
}

/// Acked only when every delivery's hand-off says so.
fn settled(settles: &[Settle]) -> Settle {
    if settles.iter().all(|s| *s == Settle::Ack) {
        Settle::Ack
    } else {
        Settle::Requeue
    }
}

/// One more attempt of each delivery a message carries (one job, or a
/// lane's batch): concurrently, each in its turn.
async fn jobs_message<S: Session>(
    ctx: &Ctx,
    link: &Link<S>,
    msg: &Inbound,
    jobs: Vec<DeliveryJob>,
    halt: &CancellationToken,
) -> Settle {
    let runtime = ctx.current.get();
    let turn = match msg.source {
        Source::Lane(_) => Turn::Wait,
        _ => Turn::Now,
    };
    let runtime = &runtime;
    let sharded = link.session.sharded();
    let settles = join_all(jobs.into_iter().map(|job| {
        let step = Box::pin(job_step(ctx, runtime, msg, job, (turn, sharded), halt));
        Box::pin(carry_on(ctx, link, msg, step))
    }))
    .await;
    settled(&settles)
}

/// One job to its step; `None`: it gave up waiting its turn.
async fn job_step(
    ctx: &Ctx,
    runtime: &Runtime,
    msg: &Inbound,
    mut job: DeliveryJob,
    (turn, sharded): (Turn, bool),
    halt: &CancellationToken,
) -> Option<Step> {
    if crate::journal::already_handled(&ctx.store, &job.delivery_id, job.hop) {
        crate::observe::skipped_job(runtime, &job.integration);
        return Some(Step::Done);
    }
    // A backend may hand a wait back early (RabbitMQ: one longer than its
    // largest tier); nothing is tried before it is due.
    let now = OffsetDateTime::now_utc();
    if job.not_before > now + DUE_SLACK {
        tracing::debug!(delivery_id = %job.delivery_id, due_in_s = (job.not_before - now).whole_seconds(), "not due yet; waits again");
        job.hop += 1;
        return Some(Step::Rewait(Box::new(job)));
    }
    if let Some(n) = crate::shard::of_job(sharded, &msg.source, &job, runtime) {
        return Some(Step::Forward(Box::new(crate::shard::job(job, n))));
    }
    let Some(target) = runtime.target(&job.integration) else {
        return Some(no_target(runtime, msg, job, now));
    };
    let event_json = Bytes::from(job.event.to_json());
    let context = (!target.integration.body.is_event()).then(|| Context::new(&job.event));
    let from = Rendering {
        event_json: &event_json,
        context: context.as_ref(),
    };
    let d = Delivery::of_job(&job, target, msg);
    crate::stages::run(ctx, &runtime.client, d, from, turn, halt).await
}

/// A job whose integration is disabled, or gone from the config: dead.
fn no_target(runtime: &Runtime, msg: &Inbound, mut job: DeliveryJob, now: OffsetDateTime) -> Step {
    let (reason, detail) = match runtime.config.integration(&job.integration) {
        Some(_) => (
            DeadReason::Disabled,
            format!(
                "integration `{}` is disabled; replay with `alertpost dlq replay --integration {}` once it is enabled",
                job.integration, job.integration
            ),
        ),
        None => (
            DeadReason::Unknown,
            format!(
                "integration `{}` is not in the configuration",
                job.integration
            ),
        ),
    };
    tracing::warn!(delivery_id = %job.delivery_id, %detail, "dead-lettering a delivery job");
    job.hop += 1;
    let letter = DeadLetter::of_job(job, reason, detail, msg.queue.clone(), now);
    Step::Dead(Box::new(letter), None)
}

/// Reads an event or jobs: by the message's type, else by its stream.
fn decode(msg: &Inbound) -> Result<Work, String> {
    let assumed = match msg.source {
        Source::Events => EVENT_SCHEMA,
        _ => JOB_SCHEMA,
    };
    // A dead letter is no work for a worker: not even read.
    if msg.kind.as_deref() == Some(DEAD_SCHEMA) {
        return Err(format!("unknown message type `{DEAD_SCHEMA}`"));
    }
    match Message::read(msg.kind.as_deref(), &msg.body, assumed)? {
        Message::Job(job) => Ok(Work::Jobs(vec![*job])),
        Message::Jobs(jobs) => Ok(Work::Jobs(jobs)),
        Message::Event(mut event) => {
            let unchanged = event
                .prepare_received(&msg.body, OffsetDateTime::now_utc())
                .map_err(|e| format!("not a valid event: {e}"))?;
            let raw = unchanged.then(|| msg.body.clone());
            Ok(Work::Event(event, raw))
        }
        Message::Dead(_) => Err(format!("unknown message type `{DEAD_SCHEMA}`")),
    }
}

/// Sends a message that cannot be read to the dead queue, then acks it.
async fn undecodable<S: Session>(
    ctx: &Ctx,
    link: &Link<S>,
    msg: &Inbound,
    detail: String,
) -> Settle {
    let id = msg
        .message_id
        .clone()
        .unwrap_or_else(|| format!("msg_{}", fnv(&msg.body)));
    tracing::warn!(%detail, "undecodable message; dead-lettering it");
    let letter = DeadLetter::undecodable(
        id,
        &msg.body,
        detail,
        msg.queue.clone(),
        OffsetDateTime::now_utc(),
    );
    handoff::hand_off(ctx, link, msg, Step::Dead(Box::new(letter), None)).await
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
