//! What the store keeps, and how keys are made.

use alertpost_event::job::AttemptCode;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// One attempt of one delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AttemptRecord {
    pub delivery_id: String,
    pub event_id: String,
    pub integration: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub started_at: OffsetDateTime,
    pub duration_ms: u64,
    pub outcome: AttemptOutcome,
    pub code: AttemptCode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub response_headers: Vec<(String, String)>,
    /// The first 4 KiB of the response body, as text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What was sent, kept for an attempt that did not deliver (where
    /// operators look; a delivered one keeps none, to keep the store's
    /// writes small).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<SentRequest>,
}

/// The request of an attempt, as kept: its secrets masked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SentRequest {
    pub method: String,
    /// Scheme, host and port (paths carry tokens).
    pub url: String,
    /// The first 4 KiB of the body as text.
    pub body: String,
}

/// What an attempt's verdict was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AttemptOutcome {
    Delivered,
    Retry,
    Dead,
    /// Not sent: a newer event of its alert came first (a record with
    /// attempt 0 says it was never sent at all).
    Superseded,
}

impl AttemptOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Delivered => "delivered",
            AttemptOutcome::Retry => "retry",
            AttemptOutcome::Dead => "dead",
            AttemptOutcome::Superseded => "superseded",
        }
    }
}

impl std::fmt::Display for AttemptOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `pad`, so widths in format strings apply.
        f.pad(self.as_str())
    }
}

/// How far a delivery got, as the journal knows it. Hops say which copy of
/// a delivery a note is about: a job of a lower hop is an older copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Progress {
    /// Handed on (to its lane, a wait) as the job of this hop, confirmed.
    HandedOn {
        hop: u32,
    },
    /// Dead-lettered as the job of this hop (a replay comes at a higher one).
    Dead {
        hop: u32,
    },
    Delivered,
    /// Given up for a newer event of its alert: as final as delivered.
    Superseded,
}

impl Progress {
    /// Whether this note says more than `other` about the same delivery:
    /// delivered (or superseded) beats everything; otherwise the higher hop, and at one hop
    /// dead beats handed on. Notes can arrive out of order (concurrent
    /// tasks, segments reloaded): the journal keeps the furthest.
    pub fn supersedes(self, other: Progress) -> bool {
        let rank = |p: Progress| match p {
            Progress::HandedOn { hop } => (1, hop, 0),
            Progress::Dead { hop } => (1, hop, 1),
            Progress::Delivered | Progress::Superseded => (2, 0, 0),
        };
        rank(self) >= rank(other)
    }
}

fn nanos(at: OffsetDateTime) -> u64 {
    u64::try_from(at.unix_timestamp_nanos()).unwrap_or(0)
}

/// 16 bytes: nanoseconds since the epoch, then a sequence, both big-endian,
/// so byte order is time order.
pub(crate) fn time_key(at: OffsetDateTime, seq: u64) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&nanos(at).to_be_bytes());
    key[8..].copy_from_slice(&seq.to_be_bytes());
    key
}

/// The time a [`time_key`] holds.
pub(crate) fn time_of(key: &[u8]) -> u64 {
    key.get(..8).map_or(0, read_u64)
}

pub(crate) fn read_u64(bytes: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = bytes.len().min(8);
    b[..n].copy_from_slice(&bytes[..n]);
    u64::from_be_bytes(b)
}
