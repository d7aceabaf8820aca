//! The hand-off: the publish that carries on a delivery's [`Step`] when it
//! is not done, its journal note, and what the step lets its message come
//! to ([`Settle`]).
//!
//! The rules:
//! - every step that goes on (to a lane, to a wait, to a shard, to the
//!   dead queue) is
//!   published and confirmed; each confirmed one is journaled at once
//!   (handed on, with the hop of the job; or dead), so a message that
//!   comes back, after a lost ack or a hand-off that failed half-way, never
//!   does again what was handed on;
//! - a delivery made is journaled before the message is settled;
//! - one step at a time, each as soon as its delivery comes to it; the
//!   message is acked only when every step is confirmed; nothing is
//!   published once the channel it came on is gone (it is being handed out
//!   again: a hand-off now would fork its deliveries), which is looked at
//!   just before each publish;
//! - a publish that finds its queue gone (deleted by an operator) makes the
//!   worker declare the topology again, counted and logged, and try again
//!   at once; any other failure backs off (doubling, up to 5 s) for up to
//!   30 s, so a broker that refuses does not cycle the message through its
//!   delivery limit in seconds; then the message is requeued. While the
//!   session cannot publish at all (blocked by an alarm, its publishing
//!   connection reopening), the hand-off waits for it, up to 10 minutes
//!   (well inside RabbitMQ's 30-minute consumer timeout), without using up
//!   those 30 s;
//! - what a confirmed step means to the counts, the integration's state
//!   and the dead letters kept is the observer's ([`crate::observe`]),
//!   told once per step, after the confirm and the journal.

use std::time::{Duration, Instant, SystemTime};

use alertpost_event::job::{DEAD_SCHEMA, JOB_SCHEMA};
use alertpost_seam::{Destination, Held, Inbound, Outgoing, PublishError, Session};
use alertpost_store::Progress;
use bytes::Bytes;

use crate::link::Link;
use crate::runtime::Ctx;
use crate::step::Step;

/// The first pause after a failed hand-off; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(250);
const MAX_PAUSE: Duration = Duration::from_secs(5);
/// How long a hand-off keeps trying before its message is requeued.
const GIVE_UP: Duration = Duration::from_secs(30);
/// How long a hand-off waits for a session that cannot publish.
const OUTAGE_MAX: Duration = Duration::from_secs(600);
/// How often that wait looks whether the message is still ours.
const HELD_EVERY: Duration = Duration::from_millis(500);

/// How a message is settled once its steps are handed off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settle {
    Ack,
    Requeue,
}

/// Journals a delivery made, or publishes a step that goes on and
/// journals it at its confirm; says whether this step lets `msg` be
/// acked (its message is acked when every one of its steps does).
pub(crate) async fn hand_off<S: Session>(
    ctx: &Ctx,
    link: &Link<S>,
    msg: &Inbound,
    step: Step,
) -> Settle {
    let step = match step {
        Step::Done => return Settle::Ack,
        Step::Delivered(id) => {
            ctx.store.note(&id, Progress::Delivered);
            return Settle::Ack;
        }
        Step::Superseded(id) => {
            ctx.store.note(&id, Progress::Superseded);
            return Settle::Ack;
        }
        other => other,
    };
    // Asked only when something is to be published (most messages: not).
    let held = &msg.held();
    let began = Instant::now();
    let mut started = began;
    let mut pause = FIRST_PAUSE;
    let mut redeclared = false;
    loop {
        // The message's channel is gone: the broker is handing it out
        // again, and a hand-off published now would fork its deliveries.
        if !held.get() {
            return Settle::Requeue;
        }
        let e = match publish(link, held, &step).await {
            Ok(()) => {
                confirmed(ctx, step).await;
                return Settle::Ack;
            }
            Err(e) => e,
        };
        let missing = matches!(e, PublishError::Unroutable(_));
        tracing::warn!(error = %e, "hand-off not confirmed");
        ctx.metrics.handoff_failures.inc();
        // Publishing is down or blocked as a whole: wait for it, not for
        // the pause, and start the count of tries afresh.
        if !link.session.publishing().borrow().is_ready() {
            let until = tokio::time::Instant::from_std(began + OUTAGE_MAX);
            if !publishing_back(link, held, until).await {
                tracing::error!(
                    waited_s = began.elapsed().as_secs(),
                    "cannot publish; the message goes back to its queue"
                );
                return Settle::Requeue;
            }
            started = Instant::now();
            pause = FIRST_PAUSE;
            continue;
        }
        // A queue deleted under us: declared again, the publish goes at once.
        let lane = match &step {
            Step::Lane(job, _) => Some(job.integration.as_str()),
            _ => None,
        };
        if missing && !redeclared && link.redeclare(ctx, lane).await {
            redeclared = true;
            continue;
        }
        if started.elapsed() + pause > GIVE_UP {
            tracing::error!(
                waited_s = started.elapsed().as_secs(),
                "hand-off still failing; the message goes back to its queue"
            );
            return Settle::Requeue;
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = link.lost.cancelled() => return Settle::Requeue,
        }
        pause = (pause * 2).min(MAX_PAUSE);
        redeclared = false;
    }
}

/// Waits until the session can publish again; false when that does not
/// come before `until`, the message stops being ours, or draining runs out.
async fn publishing_back<S: Session>(
    link: &Link<S>,
    held: &Held,
    until: tokio::time::Instant,
) -> bool {
    let mut publishing = link.session.publishing();
    let ready = async {
        while !publishing.borrow_and_update().is_ready() {
            if publishing.changed().await.is_err() {
                return false;
            }
        }
        true
    };
    // Nothing says when a channel goes: look now and then.
    let released = async {
        while held.get() {
            tokio::time::sleep(HELD_EVERY).await;
        }
    };
    tokio::select! {
        ready = ready => ready,
        _ = released => false,
        _ = tokio::time::sleep_until(until) => false,
        _ = link.lost.cancelled() => false,
    }
}

async fn publish<S: Session>(link: &Link<S>, held: &Held, step: &Step) -> Result<(), PublishError> {
    let (to, body, kind, id) = match step {
        Step::Done | Step::Delivered(_) | Step::Superseded(_) => return Ok(()),
        // Gathered with the other hand-offs to the same lane; the writer
        // looks whether the message is still ours just before it publishes.
        Step::Lane(job, _) => return link.lanes.hand_off(job, held).await,
        Step::Retry(job, _) | Step::Rewait(job) | Step::Defer(job, _) => (
            Destination::Later {
                due: SystemTime::from(job.not_before),
            },
            Bytes::from(job.to_json()),
            JOB_SCHEMA,
            &job.delivery_id,
        ),
        // A reference count, not a copy.
        Step::Forward(f) => (Destination::Shard(f.shard), f.body.clone(), f.kind, &f.id),
        Step::Dead(letter, _) => (
            Destination::Dead,
            Bytes::from(letter.to_json()),
            DEAD_SCHEMA,
            &letter.id,
        ),
    };
    let msg = Outgoing {
        body: &body,
        kind,
        message_id: id,
    };
    alertpost_seam::publish_bounded(&*link.session, &to, &msg).await
}

/// A step is confirmed: journal it (the ack path), then tell the observer.
async fn confirmed(ctx: &Ctx, step: Step) {
    match &step {
        Step::Done | Step::Delivered(_) | Step::Superseded(_) => {}
        Step::Lane(job, _) => ctx
            .store
            .note(&job.delivery_id, Progress::HandedOn { hop: job.hop }),
        Step::Retry(job, _) | Step::Rewait(job) | Step::Defer(job, _) => ctx
            .store
            .note(&job.delivery_id, Progress::HandedOn { hop: job.hop }),
        Step::Forward(f) => {
            if let Some(hop) = f.hop {
                ctx.store.note(&f.id, Progress::HandedOn { hop });
            }
        }
        Step::Dead(letter, _) => {
            if let Some(job) = &letter.job {
                ctx.store.note(&letter.id, Progress::Dead { hop: job.hop });
            }
        }
    }
    crate::observe::handed_on(ctx, step).await;
}
