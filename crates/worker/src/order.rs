//! The order stage: per-key order, `order = "latest"` (the default). For
//! each integration and alert (`dedup_key`), only the newest event taken
//! in is ever sent, and one attempt of the alert is in flight at a time.
//! An event without a `dedup_key` is an alert of its own: nothing to order.
//!
//! Every delivery of an alert passes here twice, whatever brought it (an
//! event, a retry back from its wait, its turn in its lane, a replay):
//! - taken in ([`Entry::take_in`]), before its turn: an event newer than
//!   any seen becomes the alert's newest; one older than the newest is
//!   **superseded** (never sent, acked, recorded);
//! - claimed ([`Entry::claim`]), after its turn and its circuit's leave,
//!   just before the request: superseded if a newer one came meanwhile;
//!   behind another attempt of its alert still in flight, it goes to its
//!   lane if it came in a message (never held in the message window), and
//!   in its lane waits for that attempt's end (so arrivals keep their
//!   order), then takes its turn again.
//!
//! An attempt that fails while a newer event of its alert was taken in is
//! superseded rather than retried or dead-lettered ([`Entry::outdated`]).
//!
//! Positions ([`Position`]: the producer's stamp, then the event id)
//! decide, never the order messages come back from the broker in.
//! What is known of each alert lives here in memory and in the store
//! ([`KeyFacts`]): the newest position, and whether an older delivery may
//! be waiting (a retry, its lane, a dead letter). The latter makes the
//! next newer event's facts written and flushed before it goes on: a
//! restart, even a kill -9, then finds them. An alert with nothing
//! waiting is kept in memory only: nothing older of it can come back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alertpost_config::Order;
use alertpost_event::{AlertKey, Position};
use alertpost_store::{KeyFacts, Store};
use time::OffsetDateTime;
use tokio::sync::Notify;

use crate::delivery::Delivery;

/// Alerts kept in memory before idle ones are let go (they are in the
/// store).
const CAPACITY: usize = 100_000;
/// An alert idle this long is let go first: its facts reached the store.
const IDLE: Duration = Duration::from_secs(5);

/// What the order rule says of a delivery ([`admit`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Admit {
    Go,
    /// A newer event of its alert was taken in.
    Superseded,
    /// An older attempt of its alert is in flight.
    Behind,
}

/// What is known of one alert at one integration, in memory.
#[derive(Debug, Default, Clone)]
pub(crate) struct KeyState {
    pub newest: Option<Position>,
    /// An older delivery may wait (handed to a retry or its lane).
    pub waiting: bool,
    /// The position of the attempt in flight, if one is.
    pub in_flight: Option<Position>,
}

/// The rule, pure: may a delivery at `pos` go, given its alert's state?
/// `forced`: a replay sent whatever is newer (`dlq replay --force`).
pub(crate) fn admit(state: &KeyState, pos: &Position, forced: bool) -> Admit {
    if !forced && state.newest.as_ref().is_some_and(|n| pos < n) {
        return Admit::Superseded;
    }
    // Another copy of its own job too (a redelivery while the first is
    // sent): the first's end must not let a newer one overtake the second.
    if state.in_flight.is_some() {
        return Admit::Behind;
    }
    Admit::Go
}

/// Takes `pos` in (the newest if newer): whether it must be written at
/// once, being newer than an older delivery that may wait.
fn take(state: &mut KeyState, pos: &Position) -> bool {
    if state.newest.as_ref().is_some_and(|n| pos <= n) {
        return false;
    }
    state.newest = Some(pos.clone());
    std::mem::take(&mut state.waiting)
}

pub(crate) struct Slot {
    state: Mutex<SlotState>,
    /// Told when an attempt of the alert ends.
    ended: Notify,
}

struct SlotState {
    key: KeyState,
    touched: Instant,
}

impl Slot {
    fn lock(&self) -> std::sync::MutexGuard<'_, SlotState> {
        // A poisoned slot still holds valid facts.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Every alert's state this worker knows, across sessions and reloads.
#[derive(Default)]
pub(crate) struct Keys {
    slots: Mutex<Slots>,
}

#[derive(Default)]
struct Slots {
    map: HashMap<String, Arc<Slot>>,
    /// The size at which idle alerts are next let go: at least
    /// [`CAPACITY`], twice what a sweep left, so that a burst of more than
    /// `CAPACITY` alerts at once costs one sweep per doubling, not one per
    /// new alert.
    sweep_at: usize,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys").finish_non_exhaustive()
    }
}

impl Keys {
    /// The slot of `key` at `integration`, from memory or the store.
    fn slot(&self, store: &Store, integration: &str, key: &str) -> Arc<Slot> {
        let id = format!("{integration}\0{key}");
        if let Some(slot) = self.map().map.get(&id) {
            return slot.clone();
        }
        // Read outside the map's lock: a sled read.
        let facts = store.key_facts(integration, key);
        let mut slots = self.map();
        if slots.map.len() >= slots.sweep_at.max(CAPACITY) {
            let now = Instant::now();
            slots.map.retain(|_, s| {
                Arc::strong_count(s) > 1 || now.duration_since(s.lock().touched) < IDLE
            });
            slots.sweep_at = slots.map.len().saturating_mul(2);
        }
        slots
            .map
            .entry(id)
            .or_insert_with(|| {
                Arc::new(Slot {
                    state: Mutex::new(SlotState {
                        key: KeyState {
                            newest: facts.as_ref().map(|f| f.newest.clone()),
                            waiting: facts.is_some_and(|f| f.waiting),
                            in_flight: None,
                        },
                        touched: Instant::now(),
                    }),
                    ended: Notify::new(),
                })
            })
            .clone()
    }

    fn map(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One delivery's place among its alert's: `None` from [`Entry::of`] when
/// its integration keeps no order or its event has no `dedup_key`.
pub(crate) struct Entry {
    slot: Arc<Slot>,
    store: Store,
    integration: String,
    key: String,
    pub pos: Position,
    forced: bool,
}

/// An attempt in flight, until dropped (then the next of its alert may go).
pub(crate) struct Claim {
    slot: Arc<Slot>,
    pos: Position,
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut s = self.slot.lock();
        if s.key.in_flight.as_ref() == Some(&self.pos) {
            s.key.in_flight = None;
        }
        drop(s);
        self.slot.ended.notify_waiters();
    }
}

/// What a claim comes to.
pub(crate) enum Claimed {
    Go(Claim),
    Superseded,
    /// Wait for the older attempt's end (this future), then try again.
    Behind(Arc<Slot>),
}

impl Entry {
    pub fn of(keys: &Keys, store: &Store, d: &Delivery<'_>) -> Option<Entry> {
        let integration = &d.target.integration;
        if integration.order == Order::None {
            return None;
        }
        let AlertKey::Dedup(key) = d.event.key() else {
            return None;
        };
        Some(Entry {
            slot: keys.slot(store, &integration.id, key),
            store: store.clone(),
            integration: integration.id.clone(),
            key: key.to_owned(),
            pos: d.event.position(),
            // Forced for the replay's own attempt only: its retries are
            // superseded as any.
            forced: d.attempts == 0 && d.replayed.as_ref().is_some_and(|r| r.force),
        })
    }

    /// Takes the delivery in: `false` when it is superseded.
    pub async fn take_in(&self) -> bool {
        let (verdict, write) = {
            let mut s = self.slot.lock();
            s.touched = Instant::now();
            let verdict = admit(&s.key, &self.pos, self.forced);
            let write = verdict != Admit::Superseded && take(&mut s.key, &self.pos);
            (verdict, write)
        };
        // Only what an older delivery, waiting somewhere (a retry, its
        // lane, the dead queue), could be held against is written: nothing
        // older of an alert with none waiting can come back (but for a
        // redelivery after a crash, which the journal answers), so its
        // first events cost the store nothing.
        if write {
            self.write_now(false).await;
        }
        verdict != Admit::Superseded
    }

    /// Claims the alert's attempt, just before the request.
    pub fn claim(&self) -> Claimed {
        let mut s = self.slot.lock();
        s.touched = Instant::now();
        match admit(&s.key, &self.pos, self.forced) {
            Admit::Superseded => Claimed::Superseded,
            Admit::Behind => Claimed::Behind(self.slot.clone()),
            Admit::Go => {
                s.key.in_flight = Some(self.pos.clone());
                Claimed::Go(Claim {
                    slot: self.slot.clone(),
                    pos: self.pos.clone(),
                })
            }
        }
    }

    /// Whether a newer event of its alert was taken in since (an attempt
    /// that failed is then not retried).
    pub fn outdated(&self) -> bool {
        !self.forced && admit(&self.slot.lock().key, &self.pos, false) == Admit::Superseded
    }

    /// The newest event of its alert, as taken in.
    pub fn newest(&self) -> Option<Position> {
        self.slot.lock().key.newest.clone()
    }

    /// The delivery goes to wait (a retry, its lane): the next newer event
    /// of its alert is written at once. `now`: written and flushed before
    /// it goes (a retry's; a lane's goes with the next segment).
    pub async fn waits(&self, now: bool) {
        self.slot.lock().key.waiting = true;
        if now {
            self.write_now(true).await;
        } else {
            self.store
                .note_key(&self.integration, &self.key, &self.facts(true));
        }
    }

    fn facts(&self, waiting: bool) -> KeyFacts {
        let newest = self.slot.lock().key.newest.clone();
        KeyFacts {
            newest: newest.unwrap_or_else(|| self.pos.clone()),
            waiting,
            changed: OffsetDateTime::now_utc().unix_timestamp(),
        }
    }

    async fn write_now(&self, waiting: bool) {
        let facts = self.facts(waiting);
        if let Err(e) = self
            .store
            .note_key_now(&self.integration, &self.key, &facts)
            .await
        {
            // The facts are still in memory; only a crash now could lose them.
            tracing::warn!(integration = %self.integration, error = %e, "cannot write an alert's order facts");
        }
    }
}

impl Slot {
    /// Waits until an attempt of the alert ends, at most `bound`.
    pub async fn ended(&self, bound: Duration) {
        let ended = self.ended.notified();
        tokio::pin!(ended);
        ended.as_mut().enable();
        // Looked at after enabling: an end between the claim and here is
        // not missed.
        if self.lock().key.in_flight.is_none() {
            return;
        }
        let _ = tokio::time::timeout(bound, ended).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(n: i128) -> Position {
        Position {
            at: n,
            id: format!("e{n}"),
        }
    }

    #[test]
    fn the_order_rule() {
        let state = |newest: Option<i128>, in_flight: Option<i128>| KeyState {
            newest: newest.map(at),
            waiting: false,
            in_flight: in_flight.map(at),
        };
        // (state, position, forced) → admitted
        let rows = [
            // The first of its alert.
            (state(None, None), 5, false, Admit::Go),
            // The newest (itself), or a newer one.
            (state(Some(5), None), 5, false, Admit::Go),
            (state(Some(5), None), 7, false, Admit::Go),
            // An older one: superseded, whatever is in flight.
            (state(Some(7), None), 5, false, Admit::Superseded),
            (state(Some(7), Some(7)), 5, false, Admit::Superseded),
            // Behind an older attempt in flight.
            (state(Some(7), Some(5)), 7, false, Admit::Behind),
            // Its own attempt (another copy of its job) in flight: behind
            // it too, or the first copy's end lets a newer one overtake.
            (state(Some(7), Some(7)), 7, false, Admit::Behind),
            // A forced replay: sent though older, but after the one in flight.
            (state(Some(7), None), 5, true, Admit::Go),
            (state(Some(7), Some(7)), 5, true, Admit::Behind),
        ];
        for (s, pos, forced, expected) in rows {
            assert_eq!(
                admit(&s, &at(pos), forced),
                expected,
                "{s:?}, at {pos}, forced {forced}"
            );
        }
    }

    #[test]
    fn taking_in_keeps_the_newest_and_writes_at_once_after_a_wait() {
        let mut s = KeyState::default();
        assert!(!take(&mut s, &at(5)));
        assert_eq!(s.newest, Some(at(5)), "the first is the newest");
        assert!(!take(&mut s, &at(5)), "itself again");
        assert!(!take(&mut s, &at(3)), "an older one");
        assert_eq!(s.newest, Some(at(5)), "an older one is not the newest");
        s.waiting = true;
        assert!(!take(&mut s, &at(3)), "older, though one waits");
        assert!(s.waiting, "an older one leaves what waits");
        assert!(take(&mut s, &at(7)), "newer, one waiting: written at once");
        assert_eq!(s.newest, Some(at(7)));
        assert!(!s.waiting, "all that waits is older than the newest now");
        assert!(!take(&mut s, &at(9)));
        assert_eq!(s.newest, Some(at(9)));
    }
}
