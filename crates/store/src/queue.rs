//! The durable queue of the embedded mode (`alertpost run`, issue 14): named
//! queues of messages in a sled database of their own, the source of truth
//! in that mode (unlike the record, which may lose its last moments).
//!
//! The contract is the seam's (`alertpost_seam`), so the embedded
//! backend can stand behind it:
//! - [`DurableQueue::publish`] returns once the message is on disk (a flush
//!   after the insert; concurrent publishes share flushes);
//! - a message taken ([`DurableQueue::take`]) stays in the database until
//!   it is acked; requeued, or never settled before a restart, it is handed
//!   out again;
//! - a message handed out more than `delivery_limit` times without an ack
//!   goes to the dead queue as it is (the poison rule), the count kept on
//!   disk so a message that crashes the process cannot loop forever;
//! - [`DurableQueue::publish_later`] keeps a message in a due-time index
//!   until its due time, then moves it to its queue; a restart resumes the
//!   waits in order of their due time. A task sleeps until the earliest due
//!   time (no polling loop).
//!
//! Trees: `ready` (queue name, 0, sequence → message), `later` (due in ms,
//! sequence → queue name, 0, message). The sequence is sled's monotonic id,
//! so a queue keeps publish order.
//!
//! Not wired into a command yet: the backend over it (`crates/embedded`)
//! and `alertpost run` are the rest of issue 14.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering;

use tokio::sync::{Notify, watch};

use crate::StoreError;

/// A message as the queue keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedMessage {
    /// Its schema (`alertpost.event.v1`...).
    pub kind: String,
    pub message_id: String,
    pub body: Vec<u8>,
    /// Times handed out without an ack.
    #[serde(default)]
    pub deliveries: u32,
}

/// A message handed out; settle it with [`DurableQueue::ack`] or
/// [`DurableQueue::requeue`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    pub queue: String,
    pub key: Vec<u8>,
    pub message: QueuedMessage,
    /// Handed out before without an ack.
    pub redelivered: bool,
}

/// The queues, shared by every task of the process.
#[derive(Clone)]
pub struct DurableQueue {
    inner: Arc<Inner>,
}

struct Inner {
    db: sled::Db,
    ready: sled::Tree,
    later: sled::Tree,
    dead_queue: String,
    delivery_limit: u32,
    /// Per queue: keys ready to hand out, in order, and those handed out.
    state: Mutex<HashMap<String, Lane>>,
    /// A message became ready somewhere (takers look at their queue again).
    arrived: Notify,
    /// Group commit: writes take a ticket (`wanted`), one flusher task
    /// flushes for every ticket taken so far and publishes how far it got.
    wanted: std::sync::atomic::AtomicU64,
    kick: Arc<Notify>,
    flushed: watch::Sender<Flushed>,
    /// A wait was added (the timer may need to wake earlier), or the queue
    /// is gone (the timer ends). Shared with the timer, which holds no
    /// reference to the rest while it sleeps.
    scheduled: Arc<Notify>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.scheduled.notify_one();
        self.kick.notify_one();
    }
}

/// How far the flusher got: every write with a ticket up to `done` is on
/// disk; a flush that failed fails the tickets up to its own.
#[derive(Debug, Clone, Default)]
struct Flushed {
    done: u64,
    failed: Option<(u64, String)>,
}

#[derive(Default)]
struct Lane {
    ready: VecDeque<Vec<u8>>,
    out: BTreeSet<Vec<u8>>,
}

impl std::fmt::Debug for DurableQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DurableQueue")
    }
}

fn key(queue: &str, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(queue.len() + 9);
    k.extend_from_slice(queue.as_bytes());
    k.push(0);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn queue_of(key: &[u8]) -> Option<&str> {
    let end = key.len().checked_sub(9)?;
    std::str::from_utf8(&key[..end]).ok()
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn encode(m: &QueuedMessage) -> Vec<u8> {
    // Plain data with string keys: serializing cannot fail.
    serde_json::to_vec(m).unwrap_or_default()
}

fn decode(bytes: &[u8]) -> Option<QueuedMessage> {
    serde_json::from_slice(bytes).ok()
}

impl DurableQueue {
    /// Opens (or creates) the queues in `dir`, every message stored there
    /// ready again (what was handed out and not acked before a stop comes
    /// back), and starts the timer of the waits. `dead_queue` takes what
    /// passes `delivery_limit`. Call inside a tokio runtime.
    pub fn open(
        dir: &Path,
        dead_queue: &str,
        delivery_limit: u32,
        cache_bytes: u64,
    ) -> Result<DurableQueue, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            .open()
            .map_err(|e| StoreError::QueueOpen {
                path: dir.to_owned(),
                reason: e.to_string(),
            })?;
        let ready = db.open_tree("ready")?;
        let later = db.open_tree("later")?;
        let mut state: HashMap<String, Lane> = HashMap::new();
        for entry in ready.iter().keys() {
            let k = entry?;
            if let Some(q) = queue_of(&k) {
                state
                    .entry(q.to_owned())
                    .or_default()
                    .ready
                    .push_back(k.to_vec());
            }
        }
        let queue = DurableQueue {
            inner: Arc::new(Inner {
                db,
                ready,
                later,
                dead_queue: dead_queue.to_owned(),
                delivery_limit,
                state: Mutex::new(state),
                arrived: Notify::new(),
                wanted: std::sync::atomic::AtomicU64::new(0),
                kick: Arc::new(Notify::new()),
                flushed: watch::channel(Flushed::default()).0,
                scheduled: Arc::new(Notify::new()),
            }),
        };
        tokio::spawn(flusher(
            Arc::downgrade(&queue.inner),
            queue.inner.kick.clone(),
        ));
        tokio::spawn(timer(
            Arc::downgrade(&queue.inner),
            queue.inner.scheduled.clone(),
        ));
        Ok(queue)
    }

    /// Returns once everything written before the call is on disk: many
    /// concurrent writers share one flush.
    async fn durable(&self) -> Result<(), StoreError> {
        let mut flushed = self.inner.flushed.subscribe();
        let ticket = self.inner.wanted.fetch_add(1, Ordering::SeqCst) + 1;
        self.inner.kick.notify_one();
        let state = flushed
            .wait_for(|f| f.done >= ticket || f.failed.as_ref().is_some_and(|(g, _)| *g >= ticket))
            .await
            .map_err(|_| StoreError::Queue("the queue was closed before its flush".to_owned()))?
            .clone();
        match state.failed {
            Some((g, reason)) if g >= ticket && state.done < ticket => Err(StoreError::Queue(
                format!("cannot flush the queue: {reason}"),
            )),
            _ => Ok(()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, HashMap<String, Lane>> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores `message` at the end of `queue`; returns once it is on disk.
    pub async fn publish(&self, queue: &str, message: &QueuedMessage) -> Result<(), StoreError> {
        self.publish_all(queue, std::slice::from_ref(message)).await
    }

    /// Stores `messages` at the end of `queue`, in order; returns once all
    /// are on disk (one flush for them all).
    pub async fn publish_all(
        &self,
        queue: &str,
        messages: &[QueuedMessage],
    ) -> Result<(), StoreError> {
        let mut keys = Vec::with_capacity(messages.len());
        let mut batch = sled::Batch::default();
        for m in messages {
            let k = key(queue, self.inner.db.generate_id()?);
            batch.insert(k.clone(), encode(m));
            keys.push(k);
        }
        self.inner.ready.apply_batch(batch)?;
        self.durable().await?;
        self.state()
            .entry(queue.to_owned())
            .or_default()
            .ready
            .extend(keys);
        self.inner.arrived.notify_waiters();
        Ok(())
    }

    /// Stores `message` for `queue`, not to be handed out before `due`;
    /// returns once it is on disk.
    pub async fn publish_later(
        &self,
        due: SystemTime,
        queue: &str,
        message: &QueuedMessage,
    ) -> Result<(), StoreError> {
        let mut k = millis(due).to_be_bytes().to_vec();
        k.extend_from_slice(&self.inner.db.generate_id()?.to_be_bytes());
        let mut v = queue.as_bytes().to_vec();
        v.push(0);
        v.extend_from_slice(&encode(message));
        self.inner.later.insert(k, v)?;
        self.durable().await?;
        self.inner.scheduled.notify_one();
        Ok(())
    }

    /// The next ready message of `queue`, if any; it stays stored until
    /// acked. One handed out more than the delivery limit goes to the dead
    /// queue instead, and the next is looked at.
    pub fn take(&self, queue: &str) -> Result<Option<Taken>, StoreError> {
        loop {
            let k = {
                let mut state = self.state();
                let Some(lane) = state.get_mut(queue) else {
                    return Ok(None);
                };
                let Some(k) = lane.ready.pop_front() else {
                    return Ok(None);
                };
                lane.out.insert(k.clone());
                k
            };
            let Some(stored) = self.inner.ready.get(&k)? else {
                // Acked meanwhile by an older copy of the key: gone.
                self.forget(queue, &k);
                continue;
            };
            let Some(mut message) = decode(&stored) else {
                // Written by this module, so never; dead rather than stuck.
                self.forget(queue, &k);
                self.inner.ready.remove(&k)?;
                continue;
            };
            let redelivered = message.deliveries > 0;
            message.deliveries += 1;
            if queue != self.inner.dead_queue && message.deliveries > self.inner.delivery_limit {
                self.forget(queue, &k);
                self.move_to_dead(&k, message)?;
                continue;
            }
            // The count reaches the disk with the next flush: a crash loop
            // still ends at the limit, give or take the last flush.
            self.inner.ready.insert(&k, encode(&message))?;
            return Ok(Some(Taken {
                queue: queue.to_owned(),
                key: k,
                message,
                redelivered,
            }));
        }
    }

    /// Waits until a message may be ready in some queue (then `take` again).
    pub async fn arrived(&self) {
        self.inner.arrived.notified().await;
    }

    /// A future that completes at the next arrival, registered now (so an
    /// arrival between a `take` that found nothing and the wait is not
    /// missed).
    pub fn next_arrival(&self) -> std::pin::Pin<Box<tokio::sync::futures::Notified<'_>>> {
        let mut n = Box::pin(self.inner.arrived.notified());
        // Registered at once, before the caller looks at its queue.
        n.as_mut().enable();
        n
    }

    /// Done with a message: removed, durably at the next flush (an ack lost
    /// in a crash hands the message out again: at least once).
    pub fn ack(&self, taken: &Taken) -> Result<(), StoreError> {
        self.inner.ready.remove(&taken.key)?;
        self.forget(&taken.queue, &taken.key);
        Ok(())
    }

    /// Gives a message back, at the front of its queue.
    pub fn requeue(&self, taken: &Taken) {
        let mut state = self.state();
        let lane = state.entry(taken.queue.clone()).or_default();
        if lane.out.remove(&taken.key) {
            lane.ready.push_front(taken.key.clone());
        }
        drop(state);
        self.inner.arrived.notify_waiters();
    }

    /// Whether `taken` is still handed out (not acked, not requeued).
    pub fn is_out(&self, taken: &Taken) -> bool {
        self.is_out_at(&taken.queue, &taken.key)
    }

    /// [`DurableQueue::is_out`] by the message's queue and key alone.
    pub fn is_out_at(&self, queue: &str, key: &[u8]) -> bool {
        self.state().get(queue).is_some_and(|l| l.out.contains(key))
    }

    /// Messages ready (not handed out) in `queue`.
    pub fn ready_len(&self, queue: &str) -> usize {
        self.state().get(queue).map_or(0, |l| l.ready.len())
    }

    /// Waits not yet due.
    pub fn later_len(&self) -> usize {
        self.inner.later.len()
    }

    fn forget(&self, queue: &str, k: &[u8]) {
        if let Some(lane) = self.state().get_mut(queue) {
            lane.out.remove(k);
        }
    }

    fn move_to_dead(&self, k: &[u8], mut message: QueuedMessage) -> Result<(), StoreError> {
        message.deliveries = 0;
        let dead = key(&self.inner.dead_queue, self.inner.db.generate_id()?);
        let mut batch = sled::Batch::default();
        batch.remove(k);
        batch.insert(dead.clone(), encode(&message));
        self.inner.ready.apply_batch(batch)?;
        tracing::warn!(message_id = %message.message_id, "handed out past the delivery limit; to the dead queue");
        self.state()
            .entry(self.inner.dead_queue.clone())
            .or_default()
            .ready
            .push_back(dead);
        self.inner.arrived.notify_waiters();
        Ok(())
    }

    /// Moves every wait due by `now` to its queue; when the next one is due.
    fn release_due(&self, now: SystemTime) -> Result<Option<SystemTime>, StoreError> {
        let now_ms = millis(now);
        let mut moved = false;
        for entry in self.inner.later.iter() {
            let (k, v) = entry?;
            let due = u64::from_be_bytes(k[..8].try_into().unwrap_or([0; 8]));
            if due > now_ms {
                if moved {
                    self.inner.arrived.notify_waiters();
                }
                return Ok(Some(UNIX_EPOCH + Duration::from_millis(due)));
            }
            let Some(split) = v.iter().position(|b| *b == 0) else {
                self.inner.later.remove(&k)?;
                continue;
            };
            let queue = String::from_utf8_lossy(&v[..split]).into_owned();
            let ready_key = key(&queue, self.inner.db.generate_id()?);
            // Both trees at once: a crash between leaves it in one of them.
            (&self.inner.ready, &self.inner.later)
                .transaction(|(ready, later)| {
                    ready.insert(ready_key.as_slice(), &v[split + 1..])?;
                    later.remove(&k)?;
                    Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
                })
                .map_err(|e| StoreError::Queue(format!("moving a due message: {e:?}")))?;
            self.state()
                .entry(queue)
                .or_default()
                .ready
                .push_back(ready_key);
            moved = true;
        }
        if moved {
            self.inner.arrived.notify_waiters();
        }
        Ok(None)
    }
}

use sled::Transactional;

/// Flushes for the tickets taken so far, each time one is taken; ends with
/// the queue.
async fn flusher(inner: std::sync::Weak<Inner>, kick: Arc<Notify>) {
    loop {
        kick.notified().await;
        let Some(inner) = inner.upgrade() else { return };
        let target = inner.wanted.load(Ordering::SeqCst);
        if inner.flushed.borrow().done >= target {
            continue;
        }
        match inner.db.flush_async().await {
            Ok(_) => inner.flushed.send_modify(|f| f.done = f.done.max(target)),
            Err(e) => {
                tracing::error!(error = %e, "cannot flush the queue");
                inner
                    .flushed
                    .send_modify(|f| f.failed = Some((target, e.to_string())));
            }
        }
    }
}

/// Sleeps until the earliest wait is due (or a new one is added), then
/// moves what is due; ends with the queue.
async fn timer(inner: std::sync::Weak<Inner>, scheduled: Arc<Notify>) {
    loop {
        let next = {
            let Some(inner) = inner.upgrade() else { return };
            let queue = DurableQueue { inner };
            match queue.release_due(SystemTime::now()) {
                Ok(next) => next,
                Err(e) => {
                    tracing::error!(error = %e, "cannot move due messages; trying again in 1 s");
                    Some(SystemTime::now() + Duration::from_secs(1))
                }
            }
        };
        // A wait added from here on leaves a permit: not missed.
        match next.map(|at| at.duration_since(SystemTime::now()).unwrap_or_default()) {
            Some(wait) => {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = scheduled.notified() => {}
                }
            }
            None => scheduled.notified().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(id: &str) -> QueuedMessage {
        QueuedMessage {
            kind: "alertpost.event.v1".into(),
            message_id: id.into(),
            body: id.as_bytes().to_vec(),
            deliveries: 0,
        }
    }

    fn open(dir: &Path) -> DurableQueue {
        DurableQueue::open(dir, "dead", 3, 8 << 20).expect("opens")
    }

    /// Opens the queue again after the first instance was dropped: its
    /// flusher may still hold the database (and its lock) for the flush it
    /// is in, so this waits for the lock, a bounded while.
    async fn reopen(dir: &Path) -> DurableQueue {
        let until = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match DurableQueue::open(dir, "dead", 3, 8 << 20) {
                Ok(q) => return q,
                Err(e) if std::time::Instant::now() < until => {
                    assert!(e.to_string().contains("lock"), "{e}");
                    tokio::task::yield_now().await;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(e) => panic!("the queue does not open again: {e}"),
            }
        }
    }

    #[tokio::test]
    async fn keeps_order_and_survives_a_restart_with_what_was_not_acked() {
        let dir = tempfile::tempdir().unwrap();
        {
            let q = open(dir.path());
            for id in ["a", "b", "c"] {
                q.publish("events", &msg(id)).await.unwrap();
            }
            let a = q.take("events").unwrap().unwrap();
            assert_eq!(a.message.message_id, "a");
            assert!(!a.redelivered);
            q.ack(&a).unwrap();
            let b = q.take("events").unwrap().unwrap();
            assert_eq!(b.message.message_id, "b");
            // b is handed out, never settled: the process stops.
            q.inner.db.flush_async().await.unwrap();
        }
        let q = reopen(dir.path()).await;
        let again = q.take("events").unwrap().unwrap();
        assert_eq!(again.message.message_id, "b");
        assert!(again.redelivered, "handed out before");
        assert_eq!(q.take("events").unwrap().unwrap().message.message_id, "c");
        assert!(q.take("events").unwrap().is_none());
        assert!(q.take("elsewhere").unwrap().is_none());
    }

    #[tokio::test]
    async fn a_requeued_message_comes_first_and_the_delivery_limit_sends_it_dead() {
        let dir = tempfile::tempdir().unwrap();
        let q = open(dir.path());
        q.publish("lane.x", &msg("poison")).await.unwrap();
        q.publish("lane.x", &msg("next")).await.unwrap();
        for n in 1..=3 {
            let t = q.take("lane.x").unwrap().unwrap();
            assert_eq!(
                (t.message.message_id.as_str(), t.message.deliveries),
                ("poison", n)
            );
            assert!(q.is_out(&t));
            q.requeue(&t);
            assert!(!q.is_out(&t));
        }
        // A fourth hand-out is past the limit (3): dead, and the next comes.
        let t = q.take("lane.x").unwrap().unwrap();
        assert_eq!(t.message.message_id, "next");
        let dead = q.take("dead").unwrap().unwrap();
        assert_eq!(dead.message.message_id, "poison");
        assert_eq!(dead.message.body, b"poison");
    }

    #[tokio::test]
    async fn waits_come_back_at_their_due_time_in_order_and_across_a_restart() {
        // Far enough ahead that three writes to disk on a loaded machine
        // (CI: measured over 100 ms) do not make the first due before the
        // look that says none is.
        const FIRST_MS: u64 = 1000;
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        {
            let q = open(dir.path());
            q.publish_later(
                now + Duration::from_millis(1500),
                "deliveries",
                &msg("second"),
            )
            .await
            .unwrap();
            q.publish_later(
                now + Duration::from_millis(FIRST_MS),
                "deliveries",
                &msg("first"),
            )
            .await
            .unwrap();
            q.publish_later(
                now + Duration::from_secs(3600),
                "deliveries",
                &msg("much later"),
            )
            .await
            .unwrap();
            assert!(q.take("deliveries").unwrap().is_none(), "not due yet");
            assert_eq!(q.later_len(), 3);
        }
        // Reopened (the waits resume from disk) and waited on, not polled.
        let q = reopen(dir.path()).await;
        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while got.len() < 2 {
            let arrival = q.next_arrival();
            if let Some(t) = q.take("deliveries").unwrap() {
                assert!(
                    SystemTime::now() + Duration::from_millis(20)
                        >= now + Duration::from_millis(FIRST_MS)
                );
                q.ack(&t).unwrap();
                got.push(t.message.message_id);
                continue;
            }
            tokio::time::timeout_at(deadline, arrival)
                .await
                .expect("a wait came back");
        }
        assert_eq!(got, ["first", "second"]);
        assert_eq!(q.later_len(), 1, "the hour-long wait still waits");
    }
}
