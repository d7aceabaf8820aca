//! The background writer: what deliveries queue (attempt records, journal
//! notes) written as one segment per [`WRITE_EVERY`] on the blocking pool,
//! and pruning once a minute, until shutdown; then what is queued and a
//! flush.

use std::sync::atomic::Ordering;
use std::time::Duration;

use time::OffsetDateTime;

use crate::{Retention, Store, StoreError, Write, segment};

/// Records in one segment at most.
const SEGMENT_MAX: usize = 2048;
/// How often the writer writes what is queued.
const WRITE_EVERY: Duration = Duration::from_millis(200);

impl Store {
    /// Runs the background writer and pruner until `shutdown`; then writes
    /// what is queued and flushes. Call once.
    pub async fn run(&self, retention: Retention, shutdown: impl std::future::Future<Output = ()>) {
        let Some(mut queue) = self.inner.writer.lock().ok().and_then(|mut w| w.take()) else {
            return;
        };
        let mut write_every = tokio::time::interval(WRITE_EVERY);
        write_every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut prune_every = tokio::time::interval(Duration::from_secs(60));
        prune_every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        let mut batch: Vec<Write> = Vec::with_capacity(SEGMENT_MAX);
        loop {
            let room = SEGMENT_MAX - batch.len();
            tokio::select! {
                biased;
                _ = &mut shutdown => break,
                n = queue.recv_many(&mut batch, room), if room > 0 => {
                    if n == 0 {
                        break;
                    }
                    if batch.len() >= SEGMENT_MAX {
                        self.write_blocking(&mut batch).await;
                    }
                }
                _ = write_every.tick() => {
                    if !batch.is_empty() {
                        self.write_blocking(&mut batch).await;
                    }
                }
                _ = prune_every.tick() => {
                    let store = self.clone();
                    let retention = retention.clone();
                    let pruned = tokio::task::spawn_blocking(move || store.prune(&retention)).await;
                    match pruned {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => tracing::warn!(error = %e, "store pruning failed"),
                        Err(e) => tracing::warn!(error = %e, "store pruning task failed"),
                    }
                }
            }
        }
        // Whatever is queued still goes in.
        queue.close();
        while queue.recv_many(&mut batch, SEGMENT_MAX).await > 0 {
            if batch.len() >= SEGMENT_MAX {
                self.write_blocking(&mut batch).await;
            }
        }
        if !batch.is_empty() {
            self.write_blocking(&mut batch).await;
        }
        if let Err(e) = self.inner.db.flush_async().await {
            tracing::warn!(error = %e, "store flush failed");
        }
    }

    /// Flushes sled to disk now; for tests and tools.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.inner.db.flush_async().await?;
        Ok(())
    }

    /// Writes a segment on the blocking pool: a sled insert can stall for
    /// milliseconds (page flushes), and the runtime threads carry deliveries.
    async fn write_blocking(&self, batch: &mut Vec<Write>) {
        let store = self.clone();
        let mut owned = std::mem::replace(batch, Vec::with_capacity(SEGMENT_MAX));
        if let Err(e) = tokio::task::spawn_blocking(move || store.write(&mut owned)).await {
            self.inner.healthy.store(false, Ordering::Relaxed);
            tracing::warn!(error = %e, "store writer task failed");
        }
    }

    fn write(&self, batch: &mut Vec<Write>) {
        let mut attempts = Vec::new();
        let mut notes = Vec::new();
        let mut keys = Vec::new();
        for w in batch.drain(..) {
            match w {
                Write::Attempt(r) => attempts.push(*r),
                Write::Note(id, progress) => notes.push((id, progress)),
                Write::Key(k, v) => keys.push((k, v)),
            }
        }
        if let Err(e) = self.write_keys(keys) {
            self.inner.healthy.store(false, Ordering::Relaxed);
            tracing::warn!(error = %e, "cannot write alerts' order facts");
        }
        if attempts.is_empty() && notes.is_empty() {
            return;
        }
        let value = segment::encode(&attempts, &notes);
        let bytes = value.len() as i64;
        // Keyed by its oldest attempt (its records span the last 200 ms).
        let at = attempts
            .iter()
            .map(|a| a.started_at)
            .min()
            .unwrap_or_else(OffsetDateTime::now_utc);
        let written = self
            .inner
            .segments
            .insert(self.time_key(at), value)
            .and_then(|_| self.add_bytes(bytes));
        self.inner.healthy.store(written.is_ok(), Ordering::Relaxed);
        if let Err(e) = written {
            tracing::warn!(error = %e, "cannot write attempt records");
        }
    }
}
