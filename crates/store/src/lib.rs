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
//! letter), `meta` (byte counters), `keys` (each alert's order facts at
//! each integration). Retention by age and by size: the oldest records go
//! first; an alert's facts by age only.
//!
//! Layout: here the store, its queue of writes and the journal; `writer`
//! (the background writer), `reads` (attempts and dead letters read
//! back), `retention` (pruning and the byte counters), `segment` and
//! `record` (the formats), `journal` (the in-memory window), `keys` (the
//! order facts).
//!
//! [`queue`] is something else: the durable queue of the embedded mode, a
//! database of its own and the source of truth there.

mod journal;
mod keys;
pub mod queue;
mod reads;
mod record;
mod retention;
mod segment;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alertpost_event::job::DeadLetter;
use time::OffsetDateTime;
use tokio::sync::mpsc;

use journal::Journal;
pub use keys::KeyFacts;
use record::time_key;
pub use record::{AttemptOutcome, AttemptRecord, Progress, SentRequest};
use retention::DEAD_BYTES;

/// Records waiting to be written; beyond this, new attempt records are
/// dropped (and counted) rather than slow deliveries down.
const QUEUE: usize = 16 * 1024;
/// sled's page cache: small, for the worker's memory budget (sled's own
/// default is 1 GiB).
const CACHE_BYTES: u64 = 8 * 1024 * 1024;

/// What the background writer writes.
pub(crate) enum Write {
    Attempt(Box<AttemptRecord>),
    Note(String, Progress),
    /// An alert's order facts ([`keys`]): its tree key and value.
    Key(Vec<u8>, Vec<u8>),
}

/// Segments [`Store::attempts_of_delivery`] searches, newest first (a
/// segment holds a few hundred milliseconds of attempts).
pub const DELIVERY_SCAN: usize = 50_000;

/// How long and how much the store keeps: the config's `[store]`, whose
/// defaults are the only ones.
#[derive(Debug, Clone)]
pub struct Retention {
    /// Records older than this are pruned.
    pub max_age: Duration,
    /// Attempt records and dead letters beyond this many bytes in all are
    /// pruned, oldest first.
    pub max_bytes: u64,
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
    #[error("store task failed: {0}")]
    Task(String),
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
    keys: sled::Tree,
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
        let keys = db.open_tree("keys")?;
        keys.set_merge_operator(keys::merge);
        let (queue, writer) = mpsc::channel(QUEUE);
        let store = Store {
            inner: Arc::new(Inner {
                path: dir.to_owned(),
                segments: db.open_tree("segments")?,
                dead: db.open_tree("dead")?,
                meta: db.open_tree("meta")?,
                keys,
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

    /// Bytes the store takes on disk.
    pub fn size_on_disk(&self) -> u64 {
        self.inner.db.size_on_disk().unwrap_or(0)
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
    pub(crate) fn time_key(&self, at: OffsetDateTime) -> [u8; 16] {
        time_key(at, self.next_seq())
    }
}
