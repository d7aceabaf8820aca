//! A worker's own record, in sled: every attempt, the journal of finished
//! deliveries, the dead letters this worker produced. The only crate that
//! imports sled.
//!
//! It is the worker's record, never the source of truth (that is RabbitMQ):
//! attempts and journal entries are written in batches by a background
//! task, off the delivery path, and a crash may lose the last moments of
//! history, never a delivery (at worst a redelivered message sends again
//! what was delivered just before the crash). Until a journal entry is
//! written it is held in memory, so a redelivery in the same process always
//! finds it.
//!
//! Trees: `attempts` (key: event id, time, sequence; value: time, then the
//! record), `journal` (delivery id → time and outcome), `dead` (time,
//! sequence → dead letter), `meta` (byte counter). Retention by age and by
//! the bytes of attempt records, pruned in the background by a rolling scan.
//! Attempt keys start with the event id: alertpost's ids are UUID v7, so
//! key order is event time order, which the size limit and the listing of
//! recent attempts rely on (events with ids of their own sort elsewhere).

mod prune;
mod record;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alertpost_event::job::DeadLetter;
use time::OffsetDateTime;
use tokio::sync::mpsc;

pub use record::{AttemptRecord, Finished, JournalEntry};

/// What the background writer writes.
enum Write {
    Attempt(Box<AttemptRecord>),
    Finish(String, Finished, OffsetDateTime),
}

/// Attempts waiting to be written; beyond this, new records are dropped (and
/// counted) rather than slow deliveries down.
const QUEUE: usize = 16 * 1024;
/// Records written per batch at most.
const BATCH: usize = 1024;
/// sled's page cache: small, for the worker's memory budget (sled's own
/// default is 1 GiB).
const CACHE_BYTES: u64 = 8 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct Retention {
    /// Records older than this are pruned.
    pub max_age: Duration,
    /// Attempt records beyond this many bytes are pruned, oldest first.
    pub max_bytes: u64,
}

impl Default for Retention {
    fn default() -> Retention {
        Retention {
            max_age: Duration::from_secs(7 * 24 * 3600),
            max_bytes: 256 * 1024 * 1024,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "the store at {path} is in use by another process (each worker needs a --data-dir of its own): {reason}"
    )]
    Locked { path: PathBuf, reason: String },
    #[error(
        "cannot open the store at {path}: {reason}. It holds only this worker's history: move it aside (or start with --move-aside-broken-store) and a new one is created"
    )]
    Open { path: PathBuf, reason: String },
    #[error("store: {0}")]
    Sled(#[from] sled::Error),
}

/// The store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    db: sled::Db,
    attempts: sled::Tree,
    journal: sled::Tree,
    dead: sled::Tree,
    meta: sled::Tree,
    seq: AtomicU64,
    dropped: AtomicU64,
    /// Whether the last write succeeded.
    healthy: std::sync::atomic::AtomicBool,
    queue: mpsc::Sender<Write>,
    writer: Mutex<Option<mpsc::Receiver<Write>>>,
    /// Journal entries queued but not written yet.
    pending: Mutex<HashMap<String, Finished>>,
    /// Where the rolling prune scan goes on from, per tree.
    cursors: Mutex<HashMap<&'static str, Vec<u8>>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .finish()
    }
}

impl Store {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(CACHE_BYTES)
            .flush_every_ms(Some(500))
            .open()
            .map_err(|e| {
                let reason = e.to_string();
                if reason.contains("could not acquire lock") {
                    StoreError::Locked {
                        path: dir.to_owned(),
                        reason,
                    }
                } else {
                    StoreError::Open {
                        path: dir.to_owned(),
                        reason,
                    }
                }
            })?;
        let (queue, writer) = mpsc::channel(QUEUE);
        let tree = |name: &str| db.open_tree(name);
        let inner = Inner {
            path: dir.to_owned(),
            attempts: tree("attempts")?,
            journal: tree("journal")?,
            dead: tree("dead")?,
            meta: tree("meta")?,
            seq: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            healthy: std::sync::atomic::AtomicBool::new(true),
            queue,
            writer: Mutex::new(Some(writer)),
            pending: Mutex::new(HashMap::new()),
            cursors: Mutex::new(HashMap::new()),
            db,
        };
        Ok(Store {
            inner: Arc::new(inner),
        })
    }

    /// Opens the store; if it cannot be opened for a reason other than
    /// another process holding it, moves the directory aside (logged) and
    /// starts a new one. For operators who asked for that.
    pub fn open_or_move_aside(dir: &Path) -> Result<Store, StoreError> {
        match Store::open(dir) {
            Err(StoreError::Open { reason, .. }) => {
                let stamp = OffsetDateTime::now_utc().unix_timestamp();
                let aside = dir.with_extension(format!("broken-{stamp}"));
                tracing::warn!(path = %dir.display(), moved_to = %aside.display(), %reason, "the store cannot be opened; moving it aside and starting a new one");
                std::fs::rename(dir, &aside).map_err(|e| StoreError::Open {
                    path: dir.to_owned(),
                    reason: format!("{reason}; moving it aside failed too: {e}"),
                })?;
                Store::open(dir)
            }
            other => other,
        }
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Queues an attempt for the background writer. Never waits: when the
    /// writer is far behind, the record is dropped and counted.
    pub fn record(&self, attempt: AttemptRecord) {
        if self
            .inner
            .queue
            .try_send(Write::Attempt(Box::new(attempt)))
            .is_err()
        {
            let n = self.inner.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(
                    dropped = n,
                    "attempt records dropped: the store cannot keep up"
                );
            }
        }
    }

    /// Whether the store's last write succeeded (for `/readyz`).
    pub fn healthy(&self) -> bool {
        self.inner.healthy.load(Ordering::Relaxed)
    }

    /// Attempt records dropped since start.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// Notes that a delivery is finished (delivered or dead-lettered). Seen
    /// by [`Store::finished`] at once; written with the next batch.
    pub fn finish(&self, delivery_id: &str, outcome: Finished) {
        let now = OffsetDateTime::now_utc();
        self.pending().insert(delivery_id.to_owned(), outcome);
        let write = Write::Finish(delivery_id.to_owned(), outcome, now);
        if let Err(
            mpsc::error::TrySendError::Full(Write::Finish(id, outcome, at))
            | mpsc::error::TrySendError::Closed(Write::Finish(id, outcome, at)),
        ) = self.inner.queue.try_send(write)
        {
            // The writer is far behind (or gone): write this one directly,
            // the journal matters more than history.
            let _ = self
                .inner
                .journal
                .insert(id.as_bytes(), &record::journal_value(at, outcome)[..]);
            self.pending().remove(&id);
        }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<String, Finished>> {
        // A poisoned map is still a valid map.
        self.inner.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How a delivery finished, if this worker finished it.
    pub fn finished(&self, delivery_id: &str) -> Option<JournalEntry> {
        if let Some(outcome) = self.pending().get(delivery_id) {
            return Some(JournalEntry {
                outcome: *outcome,
                at: OffsetDateTime::now_utc(),
            });
        }
        let raw = self.inner.journal.get(delivery_id.as_bytes()).ok()??;
        record::read_journal(&raw)
    }

    /// Keeps a dead letter this worker produced.
    pub fn record_dead(&self, letter: &DeadLetter) -> Result<(), StoreError> {
        self.inner
            .dead
            .insert(self.time_key(letter.dead_at), letter.to_json())?;
        Ok(())
    }

    /// Attempts, oldest first: of one event (and integration) when given,
    /// else of the most recent events; at most `limit`.
    pub fn attempts(
        &self,
        event_id: Option<&str>,
        integration: Option<&str>,
        limit: usize,
    ) -> Vec<AttemptRecord> {
        let keep = |r: &AttemptRecord| integration.is_none_or(|i| r.integration == i);
        let decode = |v: sled::IVec| record::read_attempt(&v);
        match event_id {
            Some(id) => {
                let all: Vec<AttemptRecord> = self
                    .inner
                    .attempts
                    .scan_prefix(record::event_prefix(id))
                    .filter_map(|kv| kv.ok().map(|(_, v)| v))
                    .filter_map(decode)
                    .filter(|r| keep(r))
                    .collect();
                let skip = all.len().saturating_sub(limit);
                all.into_iter().skip(skip).collect()
            }
            None => {
                let mut recent: Vec<AttemptRecord> = self
                    .inner
                    .attempts
                    .iter()
                    .rev()
                    .filter_map(|kv| kv.ok().map(|(_, v)| v))
                    .filter_map(decode)
                    .filter(|r| keep(r))
                    .take(limit)
                    .collect();
                recent.sort_by_key(|r| r.started_at);
                recent
            }
        }
    }

    /// Dead letters this worker produced, newest first.
    pub fn dead_letters(&self, integration: Option<&str>, limit: usize) -> Vec<DeadLetter> {
        self.inner
            .dead
            .iter()
            .rev()
            .filter_map(|kv| kv.ok().map(|(_, v)| v))
            .filter_map(|v| serde_json::from_slice::<DeadLetter>(&v).ok())
            .filter(|d| {
                integration.is_none_or(|i| d.job.as_ref().is_some_and(|j| j.integration == i))
            })
            .take(limit)
            .collect()
    }

    /// Bytes the store takes on disk.
    pub fn size_on_disk(&self) -> u64 {
        self.inner.db.size_on_disk().unwrap_or(0)
    }

    /// Runs the background writer and pruner until `shutdown`; then writes
    /// what is queued and flushes. Call once.
    pub async fn run(&self, retention: Retention, shutdown: impl std::future::Future<Output = ()>) {
        let Some(mut queue) = self.inner.writer.lock().ok().and_then(|mut w| w.take()) else {
            return;
        };
        let mut prune_every = tokio::time::interval(Duration::from_secs(60));
        prune_every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        let mut batch: Vec<Write> = Vec::with_capacity(BATCH);
        loop {
            tokio::select! {
                biased;
                n = queue.recv_many(&mut batch, BATCH) => {
                    if n == 0 {
                        break;
                    }
                    self.write(&mut batch);
                }
                _ = prune_every.tick() => {
                    if let Err(e) = self.prune(&retention) {
                        tracing::warn!(error = %e, "store pruning failed");
                    }
                }
                _ = &mut shutdown => break,
            }
        }
        // Whatever is queued still goes in.
        queue.close();
        while queue.recv_many(&mut batch, BATCH).await > 0 {
            self.write(&mut batch);
        }
        if let Err(e) = self.inner.db.flush_async().await {
            tracing::warn!(error = %e, "store flush failed");
        }
    }

    /// Writes now, without waiting for the background writer; for tests and
    /// tools.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.inner.db.flush_async().await?;
        Ok(())
    }

    fn write(&self, batch: &mut Vec<Write>) {
        let mut attempts = sled::Batch::default();
        let mut journal = sled::Batch::default();
        let mut finished = Vec::new();
        let mut bytes = 0u64;
        for w in batch.drain(..) {
            match w {
                Write::Attempt(r) => {
                    let key = record::attempt_key(&r.event_id, r.started_at, self.next_seq());
                    let value = record::attempt_value(&r);
                    bytes += value.len() as u64;
                    attempts.insert(key, value);
                }
                Write::Finish(id, outcome, at) => {
                    journal.insert(id.as_bytes(), &record::journal_value(at, outcome)[..]);
                    finished.push(id);
                }
            }
        }
        let written = self
            .inner
            .attempts
            .apply_batch(attempts)
            .and_then(|()| self.inner.journal.apply_batch(journal))
            .and_then(|()| self.add_bytes(bytes as i64));
        self.inner.healthy.store(written.is_ok(), Ordering::Relaxed);
        match written {
            Ok(()) => {
                let mut pending = self.pending();
                for id in finished {
                    pending.remove(&id);
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot write attempt records"),
        }
    }

    fn next_seq(&self) -> u64 {
        self.inner.seq.fetch_add(1, Ordering::Relaxed)
    }

    /// A key ordered by time: nanoseconds, then a sequence for uniqueness.
    fn time_key(&self, at: OffsetDateTime) -> [u8; 16] {
        record::time_key(at, self.next_seq())
    }

    fn add_bytes(&self, delta: i64) -> sled::Result<()> {
        self.inner
            .meta
            .update_and_fetch(b"bytes", |old| {
                let current = old.map_or(0, record::read_u64);
                Some(current.saturating_add_signed(delta).to_be_bytes().to_vec())
            })
            .map(|_| ())
    }

    /// Bytes of attempt records, as counted when written and pruned.
    pub fn attempt_bytes(&self) -> u64 {
        self.inner
            .meta
            .get(b"bytes")
            .ok()
            .flatten()
            .map_or(0, |v| record::read_u64(&v))
    }
}
