//! What the store keeps, and how keys are made.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// One attempt of one delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptRecord {
    pub delivery_id: String,
    pub event_id: String,
    pub integration: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    pub duration_ms: u64,
    /// `delivered`, `retry`, `dead`.
    pub outcome: String,
    /// `2xx`…`5xx`, `timeout`, `connect`, `policy`, `token`, `error`, `template`.
    pub code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub response_headers: Vec<(String, String)>,
    /// The first 4 KiB of the response body, as text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// How a delivery finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Finished {
    Delivered,
    Dead,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    pub outcome: Finished,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

pub(crate) fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    // Plain data with string keys: serializing cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
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

/// The time at the start of a stored value (attempts, journal).
pub(crate) fn time_of(value: &[u8]) -> u64 {
    value.get(..8).map_or(0, read_u64)
}

/// An attempt as stored: its time (8 bytes), then the record as JSON, so
/// pruning reads the time without decoding the record.
pub(crate) fn attempt_value(r: &AttemptRecord) -> Vec<u8> {
    let mut v = nanos(r.started_at).to_be_bytes().to_vec();
    v.extend_from_slice(&to_json(r));
    v
}

pub(crate) fn read_attempt(value: &[u8]) -> Option<AttemptRecord> {
    serde_json::from_slice(value.get(8..)?).ok()
}

/// A journal entry as stored: its time (8 bytes) and the outcome (1 byte).
pub(crate) fn journal_value(at: OffsetDateTime, outcome: Finished) -> [u8; 9] {
    let mut v = [0u8; 9];
    v[..8].copy_from_slice(&nanos(at).to_be_bytes());
    v[8] = match outcome {
        Finished::Delivered => 1,
        Finished::Dead => 2,
    };
    v
}

pub(crate) fn read_journal(value: &[u8]) -> Option<JournalEntry> {
    let outcome = match value.get(8)? {
        1 => Finished::Delivered,
        2 => Finished::Dead,
        _ => return None,
    };
    let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(time_of(value))).ok()?;
    Some(JournalEntry { outcome, at })
}

pub(crate) fn read_u64(bytes: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = bytes.len().min(8);
    b[..n].copy_from_slice(&bytes[..n]);
    u64::from_be_bytes(b)
}

/// `<event id> 0x00`: every attempt key of one event starts with it.
pub(crate) fn event_prefix(event_id: &str) -> Vec<u8> {
    let mut p = event_id.as_bytes().to_vec();
    p.push(0);
    p
}

pub(crate) fn attempt_key(event_id: &str, at: OffsetDateTime, seq: u64) -> Vec<u8> {
    let mut key = event_prefix(event_id);
    key.extend_from_slice(&time_key(at, seq));
    key
}
