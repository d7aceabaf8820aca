//! Retention: segments and dead letters pruned by age, then the oldest of
//! either while both take more bytes than allowed; the byte counters kept
//! in `meta` as they are written and pruned.

use time::OffsetDateTime;

use crate::record::{read_u64, time_key};
use crate::{Retention, Store, StoreError};

/// Records removed per step of pruning (keys and lengths held, not values).
const PRUNE_CHUNK: usize = 1024;
/// The byte counters in `meta`.
pub(crate) const ATTEMPT_BYTES: &[u8] = b"bytes";
pub(crate) const DEAD_BYTES: &[u8] = b"dead_bytes";

impl Store {
    pub(crate) fn add_bytes(&self, delta: i64) -> sled::Result<()> {
        self.add(ATTEMPT_BYTES, delta)
    }

    pub(crate) fn add(&self, counter: &[u8], delta: i64) -> sled::Result<()> {
        self.inner
            .meta
            .update_and_fetch(counter, |old| {
                let current = old.map_or(0, read_u64);
                Some(current.saturating_add_signed(delta).to_be_bytes().to_vec())
            })
            .map(|_| ())
    }

    /// Bytes of segments, as counted when written and pruned.
    pub fn attempt_bytes(&self) -> u64 {
        self.counter(ATTEMPT_BYTES)
    }

    /// Bytes of dead letters, as counted when written and pruned.
    pub fn dead_bytes(&self) -> u64 {
        self.counter(DEAD_BYTES)
    }

    fn counter(&self, name: &[u8]) -> u64 {
        self.inner
            .meta
            .get(name)
            .ok()
            .flatten()
            .map_or(0, |v| read_u64(&v))
    }

    /// A store written before dead letters were counted: count them once.
    pub(crate) fn count_dead_letters(&self) -> Result<(), StoreError> {
        if self.inner.meta.get(DEAD_BYTES)?.is_some() {
            return Ok(());
        }
        let mut total = 0u64;
        for entry in self.inner.dead.iter() {
            let (_, v) = entry?;
            total += v.len() as u64;
        }
        self.inner.meta.insert(DEAD_BYTES, &total.to_be_bytes())?;
        Ok(())
    }

    /// Prunes now (the background task does this every minute).
    pub fn prune_now(&self, retention: &Retention) -> Result<(), StoreError> {
        self.prune(retention)
    }

    /// Drops segments and dead letters older than the age limit, then the
    /// oldest of either while both take more bytes than allowed. Works in
    /// chunks of keys and lengths: never every expired value at once.
    pub(crate) fn prune(&self, retention: &Retention) -> Result<(), StoreError> {
        let cutoff = time_key(OffsetDateTime::now_utc() - retention.max_age, 0).to_vec();
        let mut removed = 0usize;
        for (tree, counter) in [
            (&self.inner.segments, ATTEMPT_BYTES),
            (&self.inner.dead, DEAD_BYTES),
        ] {
            loop {
                let chunk: Vec<(sled::IVec, usize)> = tree
                    .range(..cutoff.clone())
                    .take(PRUNE_CHUNK)
                    .filter_map(Result::ok)
                    .map(|(k, v)| (k, v.len()))
                    .collect();
                if chunk.is_empty() {
                    break;
                }
                let mut freed = 0i64;
                for (k, len) in chunk {
                    if tree.remove(k)?.is_some() {
                        freed += len as i64;
                        removed += 1;
                    }
                }
                self.add(counter, -freed)?;
            }
        }
        // Then by size: the older of the oldest segment and the oldest
        // dead letter goes first (both keys begin with their time).
        while self.attempt_bytes() + self.dead_bytes() > retention.max_bytes {
            let segment = self.inner.segments.first()?;
            let dead = self.inner.dead.first()?;
            let (tree, counter, (k, v)) = match (segment, dead) {
                (Some(s), Some(d)) if d.0 < s.0 => (&self.inner.dead, DEAD_BYTES, d),
                (Some(s), _) => (&self.inner.segments, ATTEMPT_BYTES, s),
                (None, Some(d)) => (&self.inner.dead, DEAD_BYTES, d),
                (None, None) => break,
            };
            tree.remove(k)?;
            self.add(counter, -(v.len() as i64))?;
            removed += 1;
        }
        // An alert's order facts by age only: kept at least as long as
        // the records of its deliveries.
        removed += self.prune_keys(retention.max_age)?;
        if removed > 0 {
            tracing::debug!(
                removed,
                attempt_bytes = self.attempt_bytes(),
                dead_bytes = self.dead_bytes(),
                "store pruned"
            );
        }
        Ok(())
    }
}
