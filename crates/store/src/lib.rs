//! A worker's own record, in sled: every attempt, the journal of finished
//! deliveries, the dead letters this worker produced. The only crate that
//! imports sled.
//!
//! It is the worker's record, never the source of truth (that is RabbitMQ).
//! Attempts and journal notes go through a background writer that writes a
//! [`segment`] of them every 200 ms (one sled insert per segment: sled
//! costs microseconds per insert, too much per delivery). A crash may lose
//! the last moments of history, never a delivery.
//!
//! The journal says how far each delivery got: handed on (with the hop of
//! the job), delivered, dead. It lives in memory (the last 15 minutes, at
//! most 200 000 deliveries), is persisted in the segments, and is reloaded
//! from them at start: a message that comes back after a lost ack or a
//! restart finds what was already done or handed on, and it is not done
//! again. Notes are seen at once in memory; a crash loses those of the last
//! segment interval.
//!
//! Trees: `segments` (key: time, sequence), `dead` (time, sequence → dead
//! letter), `meta` (byte counter). Retention by age and by size: the oldest
//! segments go first.
//!
//! [`queue`] is something else: the durable queue of the embedded mode, a
//! database of its own and the source of truth there.

mod journal;
pub mod queue;
mod record;
mod segment;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alertpost_event::job::DeadLetter;
use time::OffsetDateTime;
use tokio::sync::mpsc;

use journal::Journal;
pub use record::{AttemptOutcome, AttemptRecord, Progress, SentRequest};
use record::{read_u64, time_key, time_of};

/// Records waiting to be written; beyond this, new attempt records are
/// dropped (and counted) rather than slow deliveries down.
const QUEUE: usize = 16 * 1024;
/// Records in one segment at most.
const SEGMENT_MAX: usize = 2048;
/// How often the writer writes what is queued.
const WRITE_EVERY: Duration = Duration::from_millis(200);
/// sled's page cache: small, for the worker's memory budget (sled's own
/// default is 1 GiB).
const CACHE_BYTES: u64 = 8 * 1024 * 1024;
/// Records removed per step of pruning (keys and lengths held, not values).
const PRUNE_CHUNK: usize = 1024;
/// The byte counters in `meta`.
const ATTEMPT_BYTES: &[u8] = b"bytes";
const DEAD_BYTES: &[u8] = b"dead_bytes";

/// What the background writer writes.
enum Write {
    Attempt(Box<AttemptRecord>),
    Note(String, Progress),
}

/// Segments [`Store::attempts_of_delivery`] searches, newest first (a
/// segment holds a few hundred milliseconds of attempts).
pub const DELIVERY_SCAN: usize = 50_000;

#[derive(Debug, Clone)]
pub struct Retention {
    /// Records older than this are pruned.
    pub max_age: Duration,
    /// Attempt records and dead letters beyond this many bytes in all are
    /// pruned, oldest first.
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
    /// The embedded queue: unlike the record, the source of truth; never
    /// moved aside.
    #[error("cannot open the queue at {path}: {reason}")]
    QueueOpen { path: PathBuf, reason: String },
    #[error("queue: {0}")]
    Queue(String),
}

/// The store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    db: sled::Db,
    segments: sled::Tree,
    dead: sled::Tree,
    meta: sled::Tree,
    seq: AtomicU64,
    dropped: AtomicU64,
    /// Whether the last write succeeded.
    healthy: AtomicBool,
    queue: mpsc::Sender<Write>,
    writer: Mutex<Option<mpsc::Receiver<Write>>>,
    journal: Mutex<Journal>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .finish()
    }
}

impl Store {
    /// Opens (or creates) the store in `dir`, and reloads the journal.
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
        let store = Store {
            inner: Arc::new(Inner {
                path: dir.to_owned(),
                segments: db.open_tree("segments")?,
                dead: db.open_tree("dead")?,
                meta: db.open_tree("meta")?,
                seq: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
                healthy: AtomicBool::new(true),
                queue,
                writer: Mutex::new(Some(writer)),
                journal: Mutex::new(Journal::default()),
                db,
            }),
        };
        store.reload_journal();
        store.count_dead_letters()?;
        Ok(store)
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

    /// Attempt records dropped since start.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// Whether the store's last write succeeded (for `/readyz`).
    pub fn healthy(&self) -> bool {
        self.inner.healthy.load(Ordering::Relaxed)
    }

    fn journal(&self) -> std::sync::MutexGuard<'_, Journal> {
        // A poisoned journal is still a valid journal.
        self.inner.journal.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Notes how far a delivery got: seen by [`Store::progress`] at once,
    /// persisted with the next segment.
    pub fn note(&self, delivery_id: &str, progress: Progress) {
        self.journal().insert(delivery_id, progress);
        // A full queue loses only the persisted copy: the in-memory journal
        // still has it for as long as redeliveries come.
        let _ = self
            .inner
            .queue
            .try_send(Write::Note(delivery_id.to_owned(), progress));
    }

    /// How far a delivery got, if this worker took it there recently (the
    /// journal's window: 15 minutes, 200 000 deliveries).
    pub fn progress(&self, delivery_id: &str) -> Option<Progress> {
        self.journal().get(delivery_id)
    }

    /// Keeps a dead letter this worker produced.
    pub fn record_dead(&self, letter: &DeadLetter) -> Result<(), StoreError> {
        let value = letter.to_json();
        let len = value.len() as i64;
        self.inner
            .dead
            .insert(self.time_key(letter.dead_at), value)?;
        self.add(DEAD_BYTES, len)?;
        Ok(())
    }

    /// Attempts, oldest first: of one event (and integration) when given,
    /// else the most recent; at most `limit` (the last ones).
    pub fn attempts(
        &self,
        event_id: Option<&str>,
        integration: Option<&str>,
        limit: usize,
    ) -> Vec<AttemptRecord> {
        let keep = |r: &AttemptRecord| integration.is_none_or(|i| r.integration == i);
        let mut found: Vec<AttemptRecord> = match event_id {
            Some(id) => {
                // An alertpost event id (UUID v7) says when the event was
                // made: its attempts come after that.
                let from =
                    journal::uuid_v7_time(id).map(|t| time_key(t - Duration::from_secs(60), 0));
                self.inner
                    .segments
                    .range(from.map(|k| k.to_vec()).unwrap_or_default()..)
                    .filter_map(Result::ok)
                    .filter(|(_, v)| {
                        segment::header(v).is_some_and(|h| h.events.iter().any(|e| e == id))
                    })
                    .flat_map(|(_, v)| segment::attempts(&v))
                    .filter(|r| r.event_id == id && keep(r))
                    .collect()
            }
            None => {
                let mut recent = Vec::new();
                for (_, v) in self.inner.segments.iter().rev().filter_map(Result::ok) {
                    recent.extend(segment::attempts(&v).into_iter().filter(|r| keep(r)));
                    if recent.len() >= limit {
                        break;
                    }
                }
                recent
            }
        };
        found.sort_by_key(|r| r.started_at);
        let skip = found.len().saturating_sub(limit);
        found.into_iter().skip(skip).collect()
    }

    /// Attempts of one delivery, oldest first, at most `limit`: found
    /// through its newest attempt among the last [`DELIVERY_SCAN`]
    /// segments (a delivery id, unlike an event id, is not indexed), then
    /// by its event.
    pub fn attempts_of_delivery(&self, delivery_id: &str, limit: usize) -> Vec<AttemptRecord> {
        let finder = memchr::memmem::Finder::new(delivery_id.as_bytes());
        let event = self
            .inner
            .segments
            .iter()
            .rev()
            .take(DELIVERY_SCAN)
            .filter_map(Result::ok)
            // The bytes first: decoding every segment would cost far more.
            .filter(|(_, v)| finder.find(v).is_some())
            .find_map(|(_, v)| {
                segment::attempts(&v)
                    .into_iter()
                    .find(|r| r.delivery_id == delivery_id)
                    .map(|r| r.event_id)
            });
        let Some(event) = event else {
            return Vec::new();
        };
        let mut found = self.attempts(Some(&event), None, usize::MAX);
        found.retain(|r| r.delivery_id == delivery_id);
        let skip = found.len().saturating_sub(limit);
        found.into_iter().skip(skip).collect()
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
        for w in batch.drain(..) {
            match w {
                Write::Attempt(r) => attempts.push(*r),
                Write::Note(id, progress) => notes.push((id, progress)),
            }
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

    /// The journal of the last window, from the segments written in it.
    fn reload_journal(&self) {
        let from = OffsetDateTime::now_utc() - journal::WINDOW;
        let mut journal = self.journal();
        for (_, v) in self
            .inner
            .segments
            .range(time_key(from, 0).to_vec()..)
            .filter_map(Result::ok)
        {
            if let Some(h) = segment::header(&v) {
                for (id, progress) in h.notes() {
                    journal.insert(id, progress);
                }
            }
        }
    }

    fn next_seq(&self) -> u64 {
        self.inner.seq.fetch_add(1, Ordering::Relaxed)
    }

    /// A key ordered by time: nanoseconds, then a sequence for uniqueness.
    fn time_key(&self, at: OffsetDateTime) -> [u8; 16] {
        time_key(at, self.next_seq())
    }

    fn add_bytes(&self, delta: i64) -> sled::Result<()> {
        self.add(ATTEMPT_BYTES, delta)
    }

    fn add(&self, counter: &[u8], delta: i64) -> sled::Result<()> {
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
    fn count_dead_letters(&self) -> Result<(), StoreError> {
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
    fn prune(&self, retention: &Retention) -> Result<(), StoreError> {
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

    /// The time of the oldest attempt kept, for tests and tools.
    pub fn oldest_attempt(&self) -> Option<OffsetDateTime> {
        let (k, _) = self.inner.segments.first().ok()??;
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(time_of(&k))).ok()
    }
}
