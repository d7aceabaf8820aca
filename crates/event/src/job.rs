//! Wire types of the retry and dead queues.
//!
//! A [`DeliveryJob`] is one event's delivery to one integration that needs
//! another try: it travels through a delay tier into `<prefix>.deliveries`.
//! A [`DeadLetter`] is what lands in `<prefix>.dead`: the job (or, for a
//! message that could not be read, its raw bytes) with the reason.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::event::Event;

/// AMQP `type` of a delivery job message.
pub const JOB_SCHEMA: &str = "alertpost.job.v1";
/// AMQP `type` of a dead-letter message.
pub const DEAD_SCHEMA: &str = "alertpost.dead.v1";

/// How many attempts a job carries in its history; older ones are dropped
/// (the worker's store keeps them all). Above the default `max_attempts`.
pub const HISTORY_LIMIT: usize = 50;

/// One event's delivery to one integration, between attempts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryJob {
    /// Stable across retries, redeliveries and replays; the `webhook-id`.
    pub delivery_id: String,
    pub integration: String,
    /// Attempts made so far. The next attempt is `attempts + 1`. Kept in the
    /// job because RabbitMQ no longer maintains `x-death` counts for
    /// re-published messages.
    pub attempts: u32,
    /// When the first attempt started: `max_age` counts from here.
    #[serde(with = "time::serde::rfc3339")]
    pub first_attempt_at: OffsetDateTime,
    /// Not to be tried before this time: a delay longer than the largest tier
    /// takes several hops, and each hop checks it.
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    /// Set when `alertpost dlq replay` sent the job back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replayed: Option<Replay>,
    /// The most recent attempts, oldest first, at most [`HISTORY_LIMIT`].
    #[serde(default)]
    pub history: Vec<AttemptSummary>,
    pub event: Event,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Replay {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// How many times this delivery has been replayed.
    pub count: u32,
}

/// One attempt, as the job and the dead letter carry it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptSummary {
    pub attempt: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    pub duration_ms: u64,
    /// `2xx`…`5xx`, `timeout`, `connect`, `policy`, `template`, `validator`.
    pub code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Why a delivery (or a message) was dead-lettered; also the metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeadReason {
    /// A 4xx that is not retried.
    Status,
    /// `max_attempts` reached.
    Exhausted,
    /// `max_age` passed.
    Expired,
    /// The destination was refused by the outbound policy.
    Policy,
    /// The template could not be rendered for this event.
    Template,
    /// The message was not a valid event or job.
    Undecodable,
    /// The integration no longer exists in the config.
    #[serde(rename = "unknown_integration")]
    Unknown,
}

impl DeadReason {
    pub const ALL: [DeadReason; 7] = [
        DeadReason::Status,
        DeadReason::Exhausted,
        DeadReason::Expired,
        DeadReason::Policy,
        DeadReason::Template,
        DeadReason::Undecodable,
        DeadReason::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeadReason::Status => "status",
            DeadReason::Exhausted => "exhausted",
            DeadReason::Expired => "expired",
            DeadReason::Policy => "policy",
            DeadReason::Template => "template",
            DeadReason::Undecodable => "undecodable",
            DeadReason::Unknown => "unknown_integration",
        }
    }
}

impl fmt::Display for DeadReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message in `<prefix>.dead`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The delivery id for a dead job; a fresh id for an undecodable message.
    pub id: String,
    pub reason: DeadReason,
    /// Human-readable detail: the status and body excerpt, the parse error...
    pub detail: String,
    #[serde(with = "time::serde::rfc3339")]
    pub dead_at: OffsetDateTime,
    /// The queue the message or job was taken from.
    pub queue: String,
    /// The job, with its whole history. `None` for an undecodable message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<DeliveryJob>,
    /// An undecodable message's bytes: as text when they are UTF-8...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
    /// ...else as base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_base64: Option<String>,
}

impl DeadLetter {
    /// The dead letter of a message that could not be read as an event or job.
    pub fn undecodable(
        id: String,
        raw: &[u8],
        detail: String,
        queue: String,
        now: OffsetDateTime,
    ) -> DeadLetter {
        let (raw, raw_base64) = match std::str::from_utf8(raw) {
            Ok(text) => (Some(text.to_owned()), None),
            Err(_) => {
                use base64::Engine;
                (
                    None,
                    Some(base64::engine::general_purpose::STANDARD.encode(raw)),
                )
            }
        };
        DeadLetter {
            id,
            reason: DeadReason::Undecodable,
            detail,
            dead_at: now,
            queue,
            job: None,
            raw,
            raw_base64,
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Plain data with string keys: serializing cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

impl DeliveryJob {
    /// This job sent back by `alertpost dlq replay`: attempts reset, due now,
    /// marked as a replay (the history stays, for the record).
    pub fn replayed(mut self, now: OffsetDateTime) -> DeliveryJob {
        let count = self.replayed.as_ref().map_or(0, |r| r.count) + 1;
        self.replayed = Some(Replay { at: now, count });
        self.attempts = 0;
        self.first_attempt_at = now;
        self.not_before = now;
        self
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Plain data with string keys: serializing cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Appends an attempt, keeping the last [`HISTORY_LIMIT`].
    pub fn record(&mut self, attempt: AttemptSummary) {
        push_history(&mut self.history, attempt);
    }
}

/// Appends an attempt to a history, keeping the last [`HISTORY_LIMIT`].
pub fn push_history(history: &mut Vec<AttemptSummary>, attempt: AttemptSummary) {
    history.push(attempt);
    if history.len() > HISTORY_LIMIT {
        let excess = history.len() - HISTORY_LIMIT;
        history.drain(..excess);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Status;
    use time::macros::datetime;

    #[test]
    fn job_round_trips_and_history_is_capped() {
        let t = datetime!(2026-11-25 10:00:00 UTC);
        let mut job = DeliveryJob {
            delivery_id: "dlv_1".into(),
            integration: "hook".into(),
            attempts: 0,
            first_attempt_at: t,
            not_before: t,
            replayed: None,
            history: vec![],
            event: Event::new("s", Status::Firing, "t"),
        };
        for n in 1..=25 {
            job.record(AttemptSummary {
                attempt: n,
                started_at: t,
                duration_ms: 3,
                code: "5xx".into(),
                status: Some(503),
                error: None,
            });
        }
        assert_eq!(job.history.len(), 25);
        for n in 26..=HISTORY_LIMIT as u32 + 5 {
            job.record(AttemptSummary {
                attempt: n,
                started_at: t,
                duration_ms: 3,
                code: "5xx".into(),
                status: Some(503),
                error: None,
            });
        }
        assert_eq!(job.history.len(), HISTORY_LIMIT);
        assert_eq!(job.history[0].attempt, 6);
        let replayed = job.clone().replayed(t + std::time::Duration::from_secs(60));
        assert_eq!(replayed.attempts, 0);
        assert_eq!(replayed.replayed.as_ref().unwrap().count, 1);
        assert_eq!(replayed.clone().replayed(t).replayed.unwrap().count, 2);
        let back: DeliveryJob = serde_json::from_slice(&job.to_json()).unwrap();
        assert_eq!(back, job);
    }

    #[test]
    fn undecodable_keeps_the_bytes() {
        let t = datetime!(2026-11-25 10:00:00 UTC);
        let text = DeadLetter::undecodable("x".into(), b"{oops", "bad".into(), "q".into(), t);
        assert_eq!(text.raw.as_deref(), Some("{oops"));
        let binary =
            DeadLetter::undecodable("x".into(), &[0xff, 0x00], "bad".into(), "q".into(), t);
        assert_eq!(binary.raw_base64.as_deref(), Some("/wA="));
        let v: serde_json::Value = serde_json::from_slice(&binary.to_json()).unwrap();
        assert_eq!(v["reason"], "undecodable");
    }
}
