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
/// AMQP `type` of a message carrying several jobs of one integration (a
/// JSON array of them): what its lane holds when deliveries are handed to
/// it faster than one message each could be stored.
pub const JOBS_SCHEMA: &str = "alertpost.jobs.v1";
/// AMQP `type` of a dead-letter message.
pub const DEAD_SCHEMA: &str = "alertpost.dead.v1";

/// How many attempts a job carries in its history; older ones are dropped
/// (the worker's store keeps them all). Above the default `max_attempts`.
pub const HISTORY_LIMIT: usize = 50;

/// One event's delivery to one integration, between attempts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeliveryJob {
    /// Stable across retries, redeliveries and replays; the `webhook-id`.
    pub delivery_id: String,
    pub integration: String,
    /// Attempts made so far. The next attempt is `attempts + 1`. Kept in the
    /// job because RabbitMQ no longer maintains `x-death` counts for
    /// re-published messages.
    pub attempts: u32,
    /// When the first attempt started, or for a delivery handed to its
    /// lane before any attempt, when it was first due: `max_age` counts
    /// from here.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub first_attempt_at: OffsetDateTime,
    /// Not to be tried before this time: a delay longer than the largest tier
    /// takes several hops, and each hop checks it.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub not_before: OffsetDateTime,
    /// How many times this delivery has been handed on (to a lane, a wait,
    /// a replay): 0 in the event, one more at each hand-off. The journal
    /// keeps the newest hop a worker handed on, so a message that comes
    /// back after its hand-off (a lost ack) is not tried again.
    #[serde(default)]
    pub hop: u32,
    /// Set when `alertpost dlq replay` sent the job back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replayed: Option<Replay>,
    /// The most recent attempts, oldest first, at most [`HISTORY_LIMIT`].
    #[serde(default)]
    pub history: Vec<AttemptSummary>,
    #[schema(schema_with = crate::schema::event_schema_ref)]
    pub event: Event,
}

/// A [`DeliveryJob`] without its event, borrowed: written around the
/// event's JSON as it already is (the message's own bytes), so handing a
/// delivery on copies no event and encodes none again. Its fields and
/// their serde settings are [`DeliveryJob`]'s; a test keeps them in step.
#[derive(Debug, Clone, Serialize)]
pub struct JobHead<'a> {
    pub delivery_id: &'a str,
    pub integration: &'a str,
    pub attempts: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub first_attempt_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    pub hop: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replayed: Option<&'a Replay>,
    pub history: &'a [AttemptSummary],
}

impl JobHead<'_> {
    /// The whole job's JSON, `event_json` (one JSON object) as its event.
    pub fn to_json(&self, event_json: &[u8]) -> Vec<u8> {
        // Plain data with string keys: serializing cannot fail, and gives
        // an object, `{...}`, whose closing brace the event goes before.
        let mut out = serde_json::to_vec(self).unwrap_or_else(|_| b"{}".to_vec());
        out.pop();
        if out.len() > 1 {
            out.push(b',');
        }
        out.extend_from_slice(b"\"event\":");
        out.extend_from_slice(event_json);
        out.push(b'}');
        out
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Replay {
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: OffsetDateTime,
    /// How many times this delivery has been replayed.
    pub count: u32,
    /// Sent even when a newer event of its alert was taken in since
    /// (`alertpost dlq replay --force`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
}

/// One attempt, as the job and the dead letter carry it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AttemptSummary {
    pub attempt: u32,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub started_at: OffsetDateTime,
    pub duration_ms: u64,
    pub code: AttemptCode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Why a delivery (or a message) was dead-lettered; also the metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
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
    /// The integration is in the config with `enabled = false`: its
    /// pending deliveries wait in the dead queue, to be replayed once it is
    /// enabled again.
    Disabled,
}

impl DeadReason {
    pub const ALL: [DeadReason; 8] = [
        DeadReason::Status,
        DeadReason::Exhausted,
        DeadReason::Expired,
        DeadReason::Policy,
        DeadReason::Template,
        DeadReason::Undecodable,
        DeadReason::Unknown,
        DeadReason::Disabled,
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
            DeadReason::Disabled => "disabled",
        }
    }
}

/// What one attempt came to, as a class: the `code` of
/// `alertpost_delivery_attempts_total`, of attempt records and histories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum AttemptCode {
    #[serde(rename = "1xx")]
    Informational,
    #[serde(rename = "2xx")]
    Success,
    #[serde(rename = "3xx")]
    Redirect,
    #[serde(rename = "4xx")]
    ClientError,
    #[serde(rename = "5xx")]
    ServerError,
    /// No complete answer within the timeout.
    #[serde(rename = "timeout")]
    Timeout,
    /// No connection (refused, reset, DNS, TLS).
    #[serde(rename = "connect")]
    Connect,
    /// The outbound policy refused the destination; nothing was sent.
    #[serde(rename = "policy")]
    Policy,
    /// No OAuth 2 token could be had; nothing was sent.
    #[serde(rename = "token")]
    Token,
    /// Any other transport failure.
    #[serde(rename = "error")]
    Error,
    /// Nothing was sent: a newer event of its alert came first
    /// (`order = "latest"`). A record's code, never an attempt's (not in
    /// [`AttemptCode::ALL`]).
    #[serde(rename = "superseded")]
    Superseded,
    /// A code this version does not know (written by a newer one).
    #[serde(other, rename = "other")]
    Other,
}

impl AttemptCode {
    /// The codes of attempts made.
    pub const ALL: [AttemptCode; 11] = [
        AttemptCode::Informational,
        AttemptCode::Success,
        AttemptCode::Redirect,
        AttemptCode::ClientError,
        AttemptCode::ServerError,
        AttemptCode::Timeout,
        AttemptCode::Connect,
        AttemptCode::Policy,
        AttemptCode::Token,
        AttemptCode::Error,
        AttemptCode::Other,
    ];

    /// The class of an HTTP status.
    pub fn of_status(status: u16) -> AttemptCode {
        match status {
            100..=199 => AttemptCode::Informational,
            200..=299 => AttemptCode::Success,
            300..=399 => AttemptCode::Redirect,
            400..=499 => AttemptCode::ClientError,
            _ => AttemptCode::ServerError,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AttemptCode::Informational => "1xx",
            AttemptCode::Success => "2xx",
            AttemptCode::Redirect => "3xx",
            AttemptCode::ClientError => "4xx",
            AttemptCode::ServerError => "5xx",
            AttemptCode::Timeout => "timeout",
            AttemptCode::Connect => "connect",
            AttemptCode::Policy => "policy",
            AttemptCode::Token => "token",
            AttemptCode::Error => "error",
            AttemptCode::Superseded => "superseded",
            AttemptCode::Other => "other",
        }
    }
}

impl fmt::Display for AttemptCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for DeadReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message in `<prefix>.dead`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeadLetter {
    /// The delivery id for a dead job; a fresh id for an undecodable message.
    pub id: String,
    pub reason: DeadReason,
    /// Human-readable detail: the status and body excerpt, the parse error...
    pub detail: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub dead_at: OffsetDateTime,
    /// The queue the message or job was taken from.
    pub queue: String,
    /// The job, with its whole history. `None` for an undecodable message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<DeliveryJob>,
    /// An undecodable message's bytes: as text when they are UTF-8...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
    /// ...else as base64. At most the first [`RAW_KEPT`] bytes either way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_base64: Option<String>,
    /// An undecodable message's full length in bytes, kept or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_len: Option<u64>,
    /// The SHA-256 of all its bytes (hex), to match it with the original.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_sha256: Option<String>,
    /// True when `raw` or `raw_base64` holds only the first bytes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub raw_truncated: bool,
}

/// Bytes of an undecodable message kept in its dead letter: a dead letter
/// must never be larger than the broker accepts (RabbitMQ 4: 16 MiB by
/// default), whatever was published.
pub const RAW_KEPT: usize = 64 * 1024;

impl DeadLetter {
    /// The dead letter of a delivery: its job, with the history, and why.
    pub fn of_job(
        job: DeliveryJob,
        reason: DeadReason,
        detail: String,
        queue: String,
        now: OffsetDateTime,
    ) -> DeadLetter {
        DeadLetter {
            id: job.delivery_id.clone(),
            reason,
            detail,
            dead_at: now,
            queue,
            job: Some(job),
            raw: None,
            raw_base64: None,
            raw_len: None,
            raw_sha256: None,
            raw_truncated: false,
        }
    }

    /// The dead letter of a message that could not be read as an event or job.
    pub fn undecodable(
        id: String,
        raw: &[u8],
        detail: String,
        queue: String,
        now: OffsetDateTime,
    ) -> DeadLetter {
        use sha2::Digest;
        let sha = sha2::Sha256::digest(raw);
        let raw_sha256 = sha.iter().map(|b| format!("{b:02x}")).collect::<String>();
        let kept = &raw[..raw.len().min(RAW_KEPT)];
        let text = match std::str::from_utf8(kept) {
            Ok(text) => Some(text),
            // Text cut inside a character by the cap is still text.
            Err(e) if e.error_len().is_none() && kept.len() < raw.len() => {
                std::str::from_utf8(&kept[..e.valid_up_to()]).ok()
            }
            Err(_) => None,
        };
        let (raw_text, raw_base64) = match text {
            Some(text) => (Some(text.to_owned()), None),
            None => {
                use base64::Engine;
                (
                    None,
                    Some(base64::engine::general_purpose::STANDARD.encode(kept)),
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
            raw: raw_text,
            raw_base64,
            raw_len: Some(raw.len() as u64),
            raw_sha256: Some(raw_sha256),
            raw_truncated: kept.len() < raw.len(),
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Plain data with string keys: serializing cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

impl DeliveryJob {
    /// This job sent back by `alertpost dlq replay`: attempts reset, due now,
    /// one hop on, marked as a replay (the history stays, for the record).
    /// `force`: sent even if its alert has a newer event since.
    pub fn replayed(mut self, now: OffsetDateTime, force: bool) -> DeliveryJob {
        let count = self.replayed.as_ref().map_or(0, |r| r.count) + 1;
        self.replayed = Some(Replay {
            at: now,
            count,
            force,
        });
        self.hop += 1;
        self.attempts = 0;
        self.first_attempt_at = now;
        self.not_before = now;
        self
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Plain data with string keys: serializing cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Several jobs' JSON (each from [`DeliveryJob::to_json`]) as one
    /// [`JOBS_SCHEMA`] body.
    pub fn batch<'a>(jobs: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
        let mut out = vec![b'['];
        for (i, job) in jobs.into_iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(job);
        }
        out.push(b']');
        out
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

    const T: OffsetDateTime = datetime!(2026-11-25 10:00:00 UTC);

    /// A job of `hook`, at hop 0, due at `T`, with no history.
    fn job(id: &str) -> DeliveryJob {
        DeliveryJob {
            delivery_id: id.into(),
            integration: "hook".into(),
            attempts: 0,
            hop: 0,
            first_attempt_at: T,
            not_before: T,
            replayed: None,
            history: vec![],
            event: Event::new("s", Status::Firing, "t"),
        }
    }

    #[test]
    fn job_round_trips_and_history_is_capped() {
        let t = T;
        let mut job = job("dlv_1");
        for n in 1..=25 {
            job.record(AttemptSummary {
                attempt: n,
                started_at: t,
                duration_ms: 3,
                code: AttemptCode::ServerError,
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
                code: AttemptCode::ServerError,
                status: Some(503),
                error: None,
            });
        }
        assert_eq!(job.history.len(), HISTORY_LIMIT);
        assert_eq!(job.history[0].attempt, 6);
        let replayed = job
            .clone()
            .replayed(t + std::time::Duration::from_secs(60), false);
        assert_eq!(replayed.attempts, 0);
        assert_eq!(replayed.replayed.as_ref().unwrap().count, 1);
        assert_eq!(replayed.hop, 1, "a replay is a hand-off");
        assert_eq!(
            replayed.clone().replayed(t, true).replayed.unwrap().count,
            2
        );
        let back: DeliveryJob = serde_json::from_slice(&job.to_json()).unwrap();
        assert_eq!(back, job);
    }

    #[test]
    fn codes_keep_their_wire_names_and_read_unknown_ones() {
        for code in AttemptCode::ALL
            .into_iter()
            .chain([AttemptCode::Superseded])
        {
            let text = serde_json::to_string(&code).unwrap();
            assert_eq!(text, format!("\"{code}\""));
            assert_eq!(serde_json::from_str::<AttemptCode>(&text).unwrap(), code);
        }
        let newer: AttemptCode = serde_json::from_str("\"teapot\"").unwrap();
        assert_eq!(newer, AttemptCode::Other);
        assert_eq!(AttemptCode::of_status(503), AttemptCode::ServerError);
        assert_eq!(AttemptCode::of_status(204), AttemptCode::Success);
    }

    #[test]
    fn a_job_head_around_the_event_json_is_the_job() {
        let t = T;
        let mut job = DeliveryJob {
            attempts: 2,
            hop: 3,
            not_before: t + std::time::Duration::from_secs(5),
            replayed: Some(Replay {
                at: t,
                count: 1,
                force: false,
            }),
            event: Event::new("s", Status::Firing, "t \"quoted\""),
            ..job("dlv_1")
        };
        job.record(AttemptSummary {
            attempt: 2,
            started_at: t,
            duration_ms: 3,
            code: AttemptCode::Timeout,
            status: None,
            error: Some("timed out".into()),
        });
        for job in [
            job.clone(),
            DeliveryJob {
                replayed: None,
                ..job
            },
        ] {
            let head = JobHead {
                delivery_id: &job.delivery_id,
                integration: &job.integration,
                attempts: job.attempts,
                first_attempt_at: job.first_attempt_at,
                not_before: job.not_before,
                hop: job.hop,
                replayed: job.replayed.as_ref(),
                history: &job.history,
            };
            let json = head.to_json(&job.event.to_json());
            let back: DeliveryJob = serde_json::from_slice(&json).unwrap();
            assert_eq!(back, job);
            let a: serde_json::Value = serde_json::from_slice(&json).unwrap();
            let b: serde_json::Value = serde_json::from_slice(&job.to_json()).unwrap();
            assert_eq!(a, b, "the same document as the job's own");
        }
    }

    #[test]
    fn a_batch_is_an_array_of_jobs() {
        let (a, b) = (job("dlv_a"), job("dlv_b"));
        let (ja, jb) = (a.to_json(), b.to_json());
        let body = DeliveryJob::batch([ja.as_slice(), jb.as_slice()]);
        let back: Vec<DeliveryJob> = serde_json::from_slice(&body).unwrap();
        assert_eq!(back, [a.clone(), b]);
        let one: Vec<DeliveryJob> =
            serde_json::from_slice(&DeliveryJob::batch([ja.as_slice()])).unwrap();
        assert_eq!(one, [a]);
    }

    #[test]
    fn a_job_without_a_hop_reads_as_hop_zero() {
        let job = DeliveryJob {
            attempts: 1,
            hop: 3,
            ..job("dlv_1")
        };
        let mut v: serde_json::Value = serde_json::from_slice(&job.to_json()).unwrap();
        v.as_object_mut().unwrap().remove("hop");
        let old: DeliveryJob = serde_json::from_value(v).unwrap();
        assert_eq!(old.hop, 0);
    }

    #[test]
    fn undecodable_keeps_the_bytes() {
        let t = T;
        let text = DeadLetter::undecodable("x".into(), b"{oops", "bad".into(), "q".into(), t);
        assert_eq!(text.raw.as_deref(), Some("{oops"));
        let binary =
            DeadLetter::undecodable("x".into(), &[0xff, 0x00], "bad".into(), "q".into(), t);
        assert_eq!(binary.raw_base64.as_deref(), Some("/wA="));
        let v: serde_json::Value = serde_json::from_slice(&binary.to_json()).unwrap();
        assert_eq!(v["reason"], "undecodable");
        assert_eq!(v["raw_len"], 2);
        assert!(v.get("raw_truncated").is_none(), "kept whole");
    }

    #[test]
    fn undecodable_keeps_only_the_first_64_kib_with_the_length_and_digest() {
        let t = T;
        // Binary: 4 MiB would be about 5.3 MiB once base64, more escaped.
        let big: Vec<u8> = (0..4 * 1024 * 1024u32)
            .map(|i| (i % 251) as u8 | 0x80)
            .collect();
        let letter = DeadLetter::undecodable("x".into(), &big, "bad".into(), "q".into(), t);
        use base64::Engine;
        let kept = base64::engine::general_purpose::STANDARD
            .decode(letter.raw_base64.as_deref().unwrap())
            .unwrap();
        assert_eq!(kept, big[..RAW_KEPT]);
        assert_eq!(letter.raw_len, Some(big.len() as u64));
        assert!(letter.raw_truncated);
        use sha2::Digest;
        let hex: String = sha2::Sha256::digest(&big)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(letter.raw_sha256.as_deref(), Some(hex.as_str()));
        assert!(
            letter.to_json().len() < 2 * RAW_KEPT,
            "{}",
            letter.to_json().len()
        );
        // Text cut inside a character stays text, up to the last whole one.
        let text = "é".repeat(RAW_KEPT); // 2 bytes each
        let mut odd = String::from("x");
        odd.push_str(&text);
        let letter =
            DeadLetter::undecodable("x".into(), odd.as_bytes(), "bad".into(), "q".into(), t);
        let raw = letter.raw.unwrap();
        assert_eq!(raw.len(), RAW_KEPT - 1);
        assert!(letter.raw_truncated);
        assert_eq!(letter.raw_len, Some(odd.len() as u64));
    }
}
