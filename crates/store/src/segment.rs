//! A segment: what the background writer writes in one sled insert — the
//! attempts and finished deliveries of up to a few hundred milliseconds.
//!
//! One insert per segment instead of one per record: sled costs several
//! microseconds per insert on these machines, which at thousands of
//! deliveries a second would cost more than the deliveries themselves.
//!
//! Layout: a 4-byte big-endian header length, the header (JSON: the event
//! ids of its attempts, the journal notes: deliveries finished or handed
//! on), then the attempts (JSON array). Queries read headers and decode only the segments that
//! hold what they look for.

use serde::{Deserialize, Serialize};

use crate::record::{AttemptRecord, Progress};

#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Header {
    /// Event id of each attempt, in order.
    #[serde(default)]
    pub events: Vec<String>,
    #[serde(default)]
    pub delivered: Vec<String>,
    /// Dead letters as written before hops (read, never written).
    #[serde(default, skip_serializing)]
    pub dead: Vec<String>,
    /// Deliveries dead-lettered, with the hop of the dead job.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dead_at: Vec<(String, u32)>,
    /// Deliveries handed on, with the hop of the job handed on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub handed_on: Vec<(String, u32)>,
    /// Deliveries superseded by a newer event of their alert (a version
    /// before them ignores this list).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub superseded: Vec<String>,
}

impl Header {
    /// The journal notes (their order does not matter: the journal keeps
    /// the furthest of a delivery's notes).
    pub fn notes(&self) -> impl Iterator<Item = (&str, Progress)> {
        let handed = self
            .handed_on
            .iter()
            .map(|(id, hop)| (id.as_str(), Progress::HandedOn { hop: *hop }));
        let delivered = self
            .delivered
            .iter()
            .map(|id| (id.as_str(), Progress::Delivered));
        let dead = self
            .dead_at
            .iter()
            .map(|(id, hop)| (id.as_str(), Progress::Dead { hop: *hop }))
            // Written before hops: every job was at hop 0 then.
            .chain(
                self.dead
                    .iter()
                    .map(|id| (id.as_str(), Progress::Dead { hop: 0 })),
            );
        let superseded = self
            .superseded
            .iter()
            .map(|id| (id.as_str(), Progress::Superseded));
        handed.chain(delivered).chain(dead).chain(superseded)
    }
}

pub(crate) fn encode(attempts: &[AttemptRecord], notes: &[(String, Progress)]) -> Vec<u8> {
    let mut header = Header {
        events: attempts.iter().map(|a| a.event_id.clone()).collect(),
        ..Header::default()
    };
    for (id, progress) in notes {
        match progress {
            Progress::Delivered => header.delivered.push(id.clone()),
            Progress::Superseded => header.superseded.push(id.clone()),
            Progress::Dead { hop } => header.dead_at.push((id.clone(), *hop)),
            Progress::HandedOn { hop } => header.handed_on.push((id.clone(), *hop)),
        }
    }
    // Plain data with string keys: serializing cannot fail.
    let head = serde_json::to_vec(&header).unwrap_or_default();
    let body = serde_json::to_vec(attempts).unwrap_or_default();
    let mut out = Vec::with_capacity(4 + head.len() + body.len());
    out.extend_from_slice(&u32::try_from(head.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(&head);
    out.extend_from_slice(&body);
    out
}

/// The header alone.
pub(crate) fn header(value: &[u8]) -> Option<Header> {
    let len = usize::try_from(u32::from_be_bytes(value.get(..4)?.try_into().ok()?)).ok()?;
    serde_json::from_slice(value.get(4..4 + len)?).ok()
}

/// The attempts.
pub(crate) fn attempts(value: &[u8]) -> Vec<AttemptRecord> {
    let Some(len) = value
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_be_bytes)
        .and_then(|l| usize::try_from(l).ok())
    else {
        return Vec::new();
    };
    value
        .get(4 + len..)
        .and_then(|body| serde_json::from_slice(body).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_round_trip_and_old_dead_lists_read_as_hop_zero() {
        let notes = vec![
            ("a".to_owned(), Progress::HandedOn { hop: 2 }),
            ("b".to_owned(), Progress::Dead { hop: 3 }),
            ("c".to_owned(), Progress::Delivered),
            ("d".to_owned(), Progress::Superseded),
        ];
        let value = encode(&[], &notes);
        let h = header(&value).unwrap();
        let mut back: Vec<(String, Progress)> =
            h.notes().map(|(id, p)| (id.to_owned(), p)).collect();
        back.sort_by(|x, y| x.0.cmp(&y.0));
        assert_eq!(back, notes);
        // A segment of the version before hops.
        let old: Header =
            serde_json::from_str(r#"{"events":[],"delivered":[],"dead":["x"]}"#).unwrap();
        assert_eq!(
            old.notes().collect::<Vec<_>>(),
            [("x", Progress::Dead { hop: 0 })]
        );
    }
}
