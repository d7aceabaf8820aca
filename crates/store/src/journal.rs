//! The in-memory journal: how far each delivery got (handed on, delivered,
//! dead) in the last [`WINDOW`], at most [`CAPACITY`] deliveries, keyed by
//! 128 bits of the delivery id (its UUID, which `dlv_<32 hex>` ids are;
//! other ids are hashed). A delivery noted again is aged from its newest
//! note.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use time::OffsetDateTime;

use crate::record::Progress;

/// How far back the journal reaches: redeliveries come within seconds of a
/// lost connection, and within minutes of a restart.
pub(crate) const WINDOW: Duration = Duration::from_secs(15 * 60);
/// At most this many entries (about 8 MiB).
pub(crate) const CAPACITY: usize = 200_000;

#[derive(Default)]
pub(crate) struct Journal {
    /// Progress, and the stamp of the note that said it.
    entries: HashMap<u128, (Progress, u64)>,
    /// Notes in the order made; an entry noted again leaves its older note
    /// here, recognised by its stamp and skipped.
    order: VecDeque<(u128, Instant, u64)>,
    stamp: u64,
}

impl Journal {
    /// Notes a delivery's progress, unless the journal already knows it
    /// got further ([`Progress::supersedes`]).
    pub fn insert(&mut self, delivery_id: &str, progress: Progress) {
        let key = key(delivery_id);
        if let Some((known, ..)) = self.entries.get(&key)
            && !progress.supersedes(*known)
        {
            return;
        }
        let now = Instant::now();
        self.stamp += 1;
        self.entries.insert(key, (progress, self.stamp));
        self.order.push_back((key, now, self.stamp));
        while let Some(&(old, at, stamp)) = self.order.front() {
            if self.entries.len() > CAPACITY || now.duration_since(at) > WINDOW {
                self.order.pop_front();
                if self.entries.get(&old).is_some_and(|e| e.1 == stamp) {
                    self.entries.remove(&old);
                }
            } else if self.entries.get(&old).is_none_or(|e| e.1 != stamp) {
                // A note superseded by a newer one: nothing to keep it for.
                self.order.pop_front();
            } else {
                break;
            }
        }
    }

    pub fn get(&self, delivery_id: &str) -> Option<Progress> {
        self.entries
            .get(&key(delivery_id))
            .map(|(progress, _)| *progress)
    }
}

fn key(id: &str) -> u128 {
    if let Some(hex) = id.strip_prefix("dlv_")
        && hex.len() == 32
        && let Ok(v) = u128::from_str_radix(hex, 16)
    {
        return v;
    }
    // FNV-1a, 128 bits: for ids that are not alertpost's own.
    let mut h: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    for b in id.as_bytes() {
        h ^= u128::from(*b);
        h = h.wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013b);
    }
    h
}

/// The creation time of a UUID v7 (`xxxxxxxx-xxxx-7xxx-...`), from its first
/// 48 bits; `None` for other ids.
pub(crate) fn uuid_v7_time(id: &str) -> Option<OffsetDateTime> {
    let bytes = id.as_bytes();
    if bytes.len() != 36 || bytes.get(14) != Some(&b'7') {
        return None;
    }
    let hex: String = id[..13].chars().filter(|c| *c != '-').collect();
    let ms = u64::from_str_radix(&hex, 16).ok()?;
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_recent_entries_within_capacity() {
        let mut j = Journal::default();
        j.insert("dlv_0123456789abcdef0123456789abcdef", Progress::Delivered);
        j.insert("foreign-id", Progress::Dead { hop: 1 });
        assert_eq!(
            j.get("dlv_0123456789abcdef0123456789abcdef").unwrap(),
            Progress::Delivered
        );
        assert_eq!(j.get("foreign-id").unwrap(), Progress::Dead { hop: 1 });
        assert!(j.get("dlv_00000000000000000000000000000000").is_none());
        for i in 0..CAPACITY + 10 {
            j.insert(&format!("dlv_{i:032x}"), Progress::Delivered);
        }
        assert!(j.entries.len() <= CAPACITY);
        assert!(j.order.len() <= CAPACITY + 1);
        assert!(j.get("foreign-id").is_none(), "the oldest went first");
        assert!(j.get(&format!("dlv_{:032x}", CAPACITY + 9)).is_some());
    }

    #[test]
    fn a_delivery_noted_again_keeps_its_newest_note() {
        let mut j = Journal::default();
        let id = "dlv_0123456789abcdef0123456789abcdef";
        j.insert(id, Progress::HandedOn { hop: 2 });
        j.insert(id, Progress::HandedOn { hop: 1 });
        assert_eq!(
            j.get(id).unwrap(),
            Progress::HandedOn { hop: 2 },
            "a late note of an earlier hop does not lower it"
        );
        j.insert(id, Progress::Dead { hop: 3 });
        j.insert(id, Progress::HandedOn { hop: 3 });
        assert_eq!(j.get(id).unwrap(), Progress::Dead { hop: 3 });
        // A replay goes on from a higher hop.
        j.insert(id, Progress::HandedOn { hop: 5 });
        assert_eq!(j.get(id).unwrap(), Progress::HandedOn { hop: 5 });
        j.insert(id, Progress::Delivered);
        j.insert(id, Progress::HandedOn { hop: 9 });
        assert_eq!(
            j.get(id).unwrap(),
            Progress::Delivered,
            "nothing comes after delivered"
        );
        // Filling the journal with others evicts by age of the newest note:
        // the superseded notes of `id` take no room.
        for i in 0..CAPACITY - 1 {
            j.insert(&format!("dlv_{i:032x}"), Progress::Delivered);
        }
        assert_eq!(j.get(id).unwrap(), Progress::Delivered);
        j.insert("one-more", Progress::Delivered);
        j.insert("and-another", Progress::Delivered);
        assert!(j.get(id).is_none(), "now the oldest");
    }

    #[test]
    fn reads_the_time_of_a_uuid_v7() {
        let t = uuid_v7_time("0193a8f2-7c1e-7d4a-9b2e-5f6a7b8c9d0e").unwrap();
        assert_eq!(t.year(), 2024);
        assert!(uuid_v7_time("0193a8f2-7c1e-4d4a-9b2e-5f6a7b8c9d0e").is_none());
        assert!(uuid_v7_time("evt-1").is_none());
    }
}
