//! Retention: records older than the age limit go, then the oldest attempt
//! records until their bytes fit the size limit.

use std::time::Duration;

use time::OffsetDateTime;

use crate::record::{time_key, time_of};
use crate::{Retention, Store, StoreError};

/// Keys removed per batch: bounds the time one pruning step holds sled.
const STEP: usize = 1000;

impl Store {
    /// Prunes now (the background task does this every minute).
    pub fn prune_now(&self, retention: &Retention) -> Result<(), StoreError> {
        self.prune(retention)
    }

    pub(crate) fn prune(&self, retention: &Retention) -> Result<(), StoreError> {
        let cutoff = OffsetDateTime::now_utc() - retention.max_age;
        let cutoff_key = time_key(cutoff, 0);
        let mut removed = 0usize;
        // By age: attempts (through `recent`), the journal, dead letters.
        loop {
            let n = self.prune_attempts(|k| k < &cutoff_key[..])?;
            removed += n;
            if n < STEP {
                break;
            }
        }
        for (index, target) in [
            (&self.inner.journal_time, Some(&self.inner.journal)),
            (&self.inner.dead, None),
        ] {
            let old: Vec<_> = index
                .range(..cutoff_key.to_vec())
                .take(100_000)
                .filter_map(Result::ok)
                .collect();
            for (k, v) in old {
                index.remove(k)?;
                if let Some(target) = target {
                    target.remove(v)?;
                }
            }
        }
        // By size: oldest attempts first, until they fit.
        let mut excess = self.attempt_bytes().saturating_sub(retention.max_bytes);
        while excess > 0 {
            let (n, freed) = self.prune_oldest(excess)?;
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

    /// Removes up to [`STEP`] of the oldest attempts while `keep_going`
    /// holds for their time keys; returns how many.
    fn prune_attempts(&self, keep_going: impl Fn(&[u8]) -> bool) -> Result<usize, StoreError> {
        let oldest: Vec<_> = self
            .inner
            .recent
            .iter()
            .take(STEP)
            .filter_map(Result::ok)
            .take_while(|(k, _)| keep_going(k))
            .collect();
        let mut bytes = 0i64;
        for (time, key) in &oldest {
            if let Some(value) = self.inner.attempts.remove(key)? {
                bytes += value.len() as i64;
            }
            self.inner.recent.remove(time)?;
        }
        self.add_bytes(-bytes)?;
        Ok(oldest.len())
    }

    /// Removes the oldest attempts until `bytes` are freed (at most
    /// [`STEP`]); returns how many, and the bytes freed.
    fn prune_oldest(&self, bytes: u64) -> Result<(usize, u64), StoreError> {
        let mut freed = 0u64;
        let mut n = 0usize;
        for entry in self.inner.recent.iter().take(STEP) {
            let (time, key) = entry?;
            if let Some(value) = self.inner.attempts.remove(&key)? {
                freed += value.len() as u64;
            }
            self.inner.recent.remove(time)?;
            n += 1;
            if freed >= bytes {
                break;
            }
        }
        self.add_bytes(-i64::try_from(freed).unwrap_or(i64::MAX))?;
        Ok((n, freed))
    }

    /// The age of the oldest attempt kept, for tests and tools.
    pub fn oldest_attempt_age(&self) -> Option<Duration> {
        let (k, _) = self.inner.recent.first().ok()??;
        let now = u64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos()).unwrap_or(0);
        Some(Duration::from_nanos(now.saturating_sub(time_of(&k))))
    }
}
