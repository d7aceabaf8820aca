//! The hand-off: what each delivery of a message comes to ([`Step`]), the
//! publishes that carry on the ones not done, the journal, and how the
//! message is then settled ([`Settle`]).
//!
//! The rules:
//! - every step that goes on (to a lane, to a wait, to the dead queue) is
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
//! - outcomes are counted here, once per step, after the confirm.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use alertpost_event::job::{DEAD_SCHEMA, DeadLetter, DeliveryJob, JOB_SCHEMA};
use alertpost_metrics::Outcome;
use alertpost_seam::{Destination, Held, Inbound, Outgoing, PublishError, Session};
use alertpost_store::{Progress, Store};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::batching::{LaneWriters, PUBLISH_TIMEOUT};
use crate::runtime::{Ctx, Target};

/// The first pause after a failed hand-off; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(250);
const MAX_PAUSE: Duration = Duration::from_secs(5);
/// How long a hand-off keeps trying before its message is requeued.
const GIVE_UP: Duration = Duration::from_secs(30);
/// A topology declared this recently is not declared again for another
/// missing queue (many hand-offs find it missing at once).
const REDECLARE_AFTER: Duration = Duration::from_secs(1);
/// How long a hand-off waits for a session that cannot publish.
const OUTAGE_MAX: Duration = Duration::from_secs(600);
/// How often that wait looks whether the message is still ours.
const HELD_EVERY: Duration = Duration::from_millis(500);

/// What one delivery of a message comes to.
pub(crate) enum Step {
    /// Nothing to do: found finished or handed on in the journal.
    Done,
    /// Delivered now; journaled before the message is settled.
    Delivered(String),
    /// Could not start (its integration at its concurrency, its circuit
    /// open): to its lane. Counted `deferred`.
    Lane(Box<LaneJob>, Arc<Target>),
    /// Failed, to be tried again at `not_before`. Counted `retried`.
    Retry(Box<DeliveryJob>, Arc<Target>),
    /// Came back before its due time: waits again, not counted.
    Rewait(Box<DeliveryJob>),
    /// Given up: to the dead queue. Counted by its integration's series
    /// when it has one.
    Dead(Box<DeadLetter>, Option<Arc<Target>>),
}

/// A delivery for its lane, its job already written (around the event's
/// JSON as the message carried it: nothing copied, nothing encoded twice).
pub(crate) struct LaneJob {
    pub delivery_id: String,
    pub integration: String,
    pub hop: u32,
    /// Shared, not copied, by each try of the hand-off.
    pub json: bytes::Bytes,
}

/// How a message is settled once its steps are handed off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settle {
    Ack,
    Requeue,
}

/// What the hand-offs of one session share.
pub(crate) struct Link<S> {
    pub session: Arc<S>,
    /// Hand-offs to lanes, gathered per lane.
    lanes: LaneWriters<S>,
    /// Cancelled when draining runs out of time: the session's tasks stop
    /// where they are (hand-offs stop retrying) and their messages go back.
    pub lost: CancellationToken,
    /// When the topology was last declared again.
    redeclared: tokio::sync::Mutex<Option<Instant>>,
}

impl<S: Session> Link<S> {
    pub fn new(session: S, lost: CancellationToken) -> Link<S> {
        let session = Arc::new(session);
        Link {
            lanes: LaneWriters::new(session.clone()),
            session,
            lost,
            redeclared: tokio::sync::Mutex::new(None),
        }
    }

    /// Declares the topology, every integration's lane and the one `step`
    /// goes to (an integration may have left the config since) again; true
    /// when it is declared (now, or by another hand-off a moment ago).
    async fn redeclare(&self, ctx: &Ctx, step: &Step) -> bool {
        let mut last = self.redeclared.lock().await;
        if last.is_some_and(|at| at.elapsed() < REDECLARE_AFTER) {
            return true;
        }
        let mut lanes = ctx.current.get().lanes();
        if let Step::Lane(job, _) = step
            && !lanes.contains(&job.integration)
        {
            lanes.push(job.integration.clone());
        }
        match self.session.declare(&lanes).await {
            Ok(()) => {
                ctx.metrics.topology_redeclared.inc();
                tracing::warn!(
                    "a queue was missing (deleted under the worker?); declared the topology again"
                );
                *last = Some(Instant::now());
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "a queue is missing and the topology cannot be declared again");
                false
            }
        }
    }
}

/// Whether the journal says this delivery, as a message at `hop` carries
/// it, was already taken care of: delivered, or dead or handed on from
/// this hop or a later one (a replay of a dead delivery comes one hop
/// above its dead letter, so it goes on).
pub(crate) fn already_handled(store: &Store, delivery_id: &str, hop: u32) -> bool {
    handled(store.progress(delivery_id), hop)
}

fn handled(progress: Option<Progress>, hop: u32) -> bool {
    match progress {
        None => false,
        Some(Progress::Delivered) => true,
        Some(Progress::Dead { hop: newest } | Progress::HandedOn { hop: newest }) => newest > hop,
    }
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
        let mut publishing = link.session.publishing();
        if !publishing.borrow_and_update().is_ready() {
            let until = tokio::time::Instant::from_std(began + OUTAGE_MAX);
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
            let came_back = tokio::select! {
                ready = ready => ready,
                _ = released => false,
                _ = tokio::time::sleep_until(until) => false,
                _ = link.lost.cancelled() => false,
            };
            if !came_back {
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
        if missing && !redeclared && link.redeclare(ctx, &step).await {
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

async fn publish<S: Session>(link: &Link<S>, held: &Held, step: &Step) -> Result<(), PublishError> {
    let (to, body, kind, id) = match step {
        Step::Done | Step::Delivered(_) => return Ok(()),
        // Gathered with the other hand-offs to the same lane; the writer
        // looks whether the message is still ours just before it publishes.
        Step::Lane(job, _) => return link.lanes.hand_off(job, held).await,
        Step::Retry(job, _) | Step::Rewait(job) => (
            Destination::Later {
                due: SystemTime::from(job.not_before),
            },
            job.to_json(),
            JOB_SCHEMA,
            &job.delivery_id,
        ),
        Step::Dead(letter, _) => (Destination::Dead, letter.to_json(), DEAD_SCHEMA, &letter.id),
    };
    let msg = Outgoing {
        body: &body,
        kind,
        message_id: id,
    };
    match tokio::time::timeout(PUBLISH_TIMEOUT, link.session.publish(&to, &msg)).await {
        Ok(result) => result,
        Err(_) => Err(PublishError::Unavailable(format!(
            "no confirm within {}s",
            PUBLISH_TIMEOUT.as_secs()
        ))),
    }
}

/// A step is confirmed: journal it, count it, keep a dead letter.
async fn confirmed(ctx: &Ctx, step: Step) {
    match step {
        Step::Done | Step::Delivered(_) => {}
        Step::Lane(job, target) => {
            ctx.store
                .note(&job.delivery_id, Progress::HandedOn { hop: job.hop });
            target.metrics.outcome(Outcome::Deferred);
        }
        Step::Retry(job, target) => {
            ctx.store
                .note(&job.delivery_id, Progress::HandedOn { hop: job.hop });
            target.metrics.outcome(Outcome::Retried);
            let wait = (job.not_before - OffsetDateTime::now_utc())
                .try_into()
                .unwrap_or(Duration::ZERO);
            target
                .metrics
                .retry(alertpost_seam::topology::tier_index(&ctx.tiers, wait));
        }
        Step::Rewait(job) => ctx
            .store
            .note(&job.delivery_id, Progress::HandedOn { hop: job.hop }),
        Step::Dead(letter, target) => {
            if let Some(job) = &letter.job {
                ctx.store.note(&letter.id, Progress::Dead { hop: job.hop });
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_journal_rule() {
        let handed = |hop| Some(Progress::HandedOn { hop });
        let dead = |hop| Some(Progress::Dead { hop });
        // (journal, hop of the message) → already handled?
        let rows = [
            (None, 0, false),
            (Some(Progress::Delivered), 0, true),
            (Some(Progress::Delivered), 3, true),
            // A copy of the job that died came back (a lost ack)...
            (dead(2), 1, true),
            // ...but its replay comes one hop above the dead letter.
            (dead(2), 3, false),
            // The event (hop 0) came back after its delivery went to a lane.
            (handed(1), 0, true),
            // The lane's job (hop 1) itself: not handled yet.
            (handed(1), 1, false),
            // A job of hop 1 back after hop 2 was handed on: a fork.
            (handed(2), 1, true),
            (handed(2), 3, false),
        ];
        for (progress, hop, expected) in rows {
            assert_eq!(handled(progress, hop), expected, "{progress:?}, hop {hop}");
        }
    }
}
