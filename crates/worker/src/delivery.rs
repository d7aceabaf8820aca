//! One delivery of one event to one integration as it travels along its
//! stages ([`Delivery`]), and what it becomes when it goes on: the job of
//! its next hop (to its lane, to a wait), or its dead letter.

use std::sync::Arc;

use alertpost_deliver::Verdict;
use alertpost_event::Event;
use alertpost_event::job::{
    AttemptSummary, DeadLetter, DeadReason, DeliveryJob, JobHead, Replay, push_history,
};
use alertpost_seam::{Inbound, Source};
use bytes::Bytes;
use time::OffsetDateTime;

use crate::attempt::{Tried, duration_ms};
use crate::decide::Decision;
use crate::step::{LaneJob, Step};
use crate::target::Target;

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
    /// The queue it came from, for dead letters.
    pub queue: &'a str,
    /// It came from its alert's shard: one that cannot start now waits
    /// rather than going to its lane, which every worker reads.
    pub on_shard: bool,
}

impl<'a> Delivery<'a> {
    /// The first attempt of `event` to `target` (delivery `id`), from
    /// message `msg`.
    pub fn first(
        event: &'a Event,
        target: &'a Arc<Target>,
        id: String,
        msg: &'a Inbound,
    ) -> Delivery<'a> {
        Delivery {
            event,
            target,
            id,
            hop: 0,
            attempts: 0,
            first_attempt_at: None,
            history: Vec::new(),
            replayed: None,
            queue: &msg.queue,
            on_shard: matches!(msg.source, Source::Shard(_)),
        }
    }

    /// One more attempt of `job` to `target`, from a message of `queue`.
    pub fn of_job(job: &'a DeliveryJob, target: &'a Arc<Target>, msg: &'a Inbound) -> Delivery<'a> {
        Delivery {
            event: &job.event,
            target,
            id: job.delivery_id.clone(),
            hop: job.hop,
            attempts: job.attempts,
            first_attempt_at: Some(job.first_attempt_at),
            history: job.history.clone(),
            replayed: job.replayed.clone(),
            queue: &msg.queue,
            on_shard: matches!(msg.source, Source::Shard(_)),
        }
    }

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
    pub fn into_lane(self, event_json: &[u8]) -> Step {
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

    /// Waits until `due`, then back to its shard (see [`Step::Defer`]).
    pub fn into_wait(self, due: OffsetDateTime) -> Step {
        let target = self.target.clone();
        let first = self.first_or(OffsetDateTime::now_utc());
        Step::Defer(Box::new(self.into_job(first, due)), target)
    }

    /// To the dead queue, for `reason`.
    pub fn dead(self, reason: DeadReason, detail: String) -> Step {
        let now = OffsetDateTime::now_utc();
        let target = self.target.clone();
        let queue = self.queue.to_owned();
        let first = self.first_or(now);
        let letter = DeadLetter::of_job(self.into_job(first, now), reason, detail, queue, now);
        Step::Dead(Box::new(letter), Some(target))
    }

    /// Waited for its turn past its `max_age`.
    pub fn expired(self) -> Step {
        let detail = format!(
            "waited for its turn (its integration busy or its circuit open) past max_age; {} attempts made",
            self.attempts
        );
        self.dead(DeadReason::Expired, detail)
    }

    /// What attempt `number` and its decision make of this delivery, first
    /// attempted at `first`.
    pub fn concluded(
        mut self,
        number: u32,
        tried: &Tried,
        decision: Decision,
        first: OffsetDateTime,
    ) -> Step {
        self.attempts = number;
        match decision {
            Decision::Delivered => Step::Delivered(self.id),
            Decision::Retry { due } => {
                // The job's history matters only if the delivery goes on.
                push_history(&mut self.history, summary(number, tried));
                let target = self.target.clone();
                Step::Retry(Box::new(self.into_job(first, due)), target)
            }
            Decision::Dead { reason, detail } => {
                push_history(&mut self.history, summary(number, tried));
                self.dead(reason, detail)
            }
        }
    }
}

/// Attempt `attempt` as the job's history keeps it.
fn summary(attempt: u32, tried: &Tried) -> AttemptSummary {
    AttemptSummary {
        attempt,
        started_at: OffsetDateTime::from(tried.exchange.started_at),
        duration_ms: duration_ms(tried.exchange.duration),
        code: tried.exchange.result.code(),
        status: tried.exchange.result.status(),
        error: match &tried.verdict {
            Verdict::Delivered => None,
            Verdict::Retry { reason, .. } => Some(reason.clone()),
            Verdict::Dead { detail, .. } => Some(detail.clone()),
        },
    }
}
