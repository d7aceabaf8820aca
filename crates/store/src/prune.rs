//! Retention: a rolling scan drops records older than the age limit; then,
//! while the attempt records take more bytes than allowed, the first keys
//! go (for UUID v7 event ids, the oldest events).

use time::OffsetDateTime;

use crate::record::{time_key, time_of};
use crate::{Retention, Store, StoreError};

/// Keys looked at per tree and per pruning step: bounds the time one step
/// holds sled, whatever the store's size.
const SCAN: usize = 50_000;

impl Store {
    /// Prunes now (the background task does this every minute).
    pub fn prune_now(&self, retention: &Retention) -> Result<(), StoreError> {
        self.prune(retention)
    }

    pub(crate) fn prune(&self, retention: &Retention) -> Result<(), StoreError> {
        let cutoff = OffsetDateTime::now_utc() - retention.max_age;
        let cutoff_ns = u64::try_from(cutoff.unix_timestamp_nanos()).unwrap_or(0);
        let mut removed = 0usize;
        // By age: attempts and the journal (values start with their time),
        // dead letters (keys start with it).
        let freed = self.scan_out(&self.inner.attempts, "attempts", cutoff_ns)?;
        self.add_bytes(-i64::try_from(freed.1).unwrap_or(i64::MAX))?;
        removed += freed.0;
        removed += self.scan_out(&self.inner.journal, "journal", cutoff_ns)?.0;
        let old: Vec<_> = self
            .inner
            .dead
            .range(..time_key(cutoff, 0).to_vec())
            .take(SCAN)
            .filter_map(Result::ok)
            .map(|(k, _)| k)
            .collect();
        for k in old {
            self.inner.dead.remove(k)?;
            removed += 1;
        }
        // By size: the first attempt keys, until they fit.
        let mut excess = self.attempt_bytes().saturating_sub(retention.max_bytes);
        while excess > 0 {
            let mut freed = 0u64;
            let mut n = 0usize;
            for entry in self.inner.attempts.iter().take(1000) {
                let (key, value) = entry?;
                self.inner.attempts.remove(key)?;
                freed += value.len() as u64;
                n += 1;
                if freed >= excess {
                    break;
                }
            }
            self.add_bytes(-i64::try_from(freed).unwrap_or(i64::MAX))?;
            removed += n;
            excess = excess.saturating_sub(freed);
            if n == 0 {
                break;
            }
        }
        if removed > 0 {
            tracing::debug!(removed, bytes = self.attempt_bytes(), "store pruned");
        }
        Ok(())
    }

    /// Looks at up to [`SCAN`] keys of `tree` from where the last scan
    /// stopped, removing those whose value's time is before `cutoff_ns`;
    /// returns how many were removed and their bytes.
    fn scan_out(
        &self,
        tree: &sled::Tree,
        name: &'static str,
        cutoff_ns: u64,
    ) -> Result<(usize, u64), StoreError> {
        let start = self
            .inner
            .cursors
            .lock()
            .ok()
            .and_then(|c| c.get(name).cloned())
            .unwrap_or_default();
        let mut last = None;
        let mut removed = (0usize, 0u64);
        for entry in tree.range(start..).take(SCAN) {
            let (key, value) = entry?;
            if time_of(&value) < cutoff_ns {
                tree.remove(&key)?;
                removed.0 += 1;
                removed.1 += value.len() as u64;
            }
            last = Some(key);
        }
        // Next time on from here; at the end, from the start again.
        let next = match last {
            Some(key) => {
                let mut k = key.to_vec();
                k.push(0);
                k
            }
            None => Vec::new(),
        };
        let scanned_all = tree.range(next.clone()..).next().is_none();
        if let Ok(mut c) = self.inner.cursors.lock() {
            c.insert(name, if scanned_all { Vec::new() } else { next });
        }
        Ok(removed)
    }

    /// The time of the oldest attempt kept, for tests and tools.
    pub fn oldest_attempt(&self) -> Option<OffsetDateTime> {
        let oldest = self
            .inner
            .attempts
            .iter()
            .filter_map(Result::ok)
            .map(|(_, v)| time_of(&v))
            .min()?;
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(oldest)).ok()
    }
}
