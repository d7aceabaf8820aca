//! The turn stage: before a delivery's request may go out, its
//! integration's permit (a place within its concurrency), a token of its
//! rate limit, and its circuit's leave, in that order. A delivery gets its
//! turn one of two ways ([`Turn`]):
//! - `Now` (from the events, or a job back from a wait): only if all three
//!   are free at once; otherwise it goes to the integration's lane, and
//!   the message it came in does not wait for it;
//! - `Wait` (from its lane): it waits for a permit, in order, then for the
//!   bucket and for the circuit, up to [`HOLD_MAX`] (then back to the end
//!   of its lane); when the session stops, it gives up and its message
//!   goes back to the lane.
//!
//! Waiting for the bucket or the circuit is not an attempt: it never
//! counts toward `max_attempts` or the circuit. A delivery past its
//! `max_age` while it waits is expired.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use alertpost_store::Store;
use time::OffsetDateTime;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;

use crate::circuit::Gate;
use crate::delivery::Delivery;
use crate::target::Target;

/// A delivery waits its lane's turn at most this long, then goes to the
/// back of its lane: no message is held near RabbitMQ's consumer timeout
/// (30 minutes by default), however long a circuit stays open.
const HOLD_MAX: Duration = Duration::from_secs(300);
/// A delivery waiting for its circuit looks again at most this often,
/// whatever the cooldown (a tiny one would make it spin).
const RECHECK_MIN: Duration = Duration::from_millis(50);

/// How a delivery gets its turn; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Turn {
    Now,
    Wait,
}

/// What came of asking for a turn.
pub(crate) enum Taken {
    /// Its turn: the request may go out.
    Go(Ticket),
    /// Not now: to its integration's lane.
    Lane,
    /// Past its `max_age` before it could be tried.
    Expired,
    /// Another copy of its job finished while it waited (the journal says
    /// so): nothing to do.
    Done,
    /// The session stopped while it waited: nothing was done.
    Halted,
}

/// A delivery's turn, held until its attempt ends: its permit, and whether
/// the attempt is its circuit's probe.
pub(crate) struct Ticket {
    _permit: Option<OwnedSemaphorePermit>,
    probe: bool,
}

impl Ticket {
    /// The attempt will not go out (its body could not be made): a probe
    /// gives its place back, so the circuit does not wait for it.
    pub fn unused(self, target: &Target) {
        if self.probe {
            target.circuit.withdraw();
        }
    }
}

/// Asks for `d`'s turn; see the module docs. `store`: the journal, looked
/// at after a lane's wait.
pub(crate) async fn take(
    store: &Store,
    d: &Delivery<'_>,
    turn: Turn,
    halt: &CancellationToken,
) -> Taken {
    let target = d.target;
    let policy = target.integration.retry;
    let first = d.first_attempt_at;
    let too_old =
        || first.is_some_and(|f| crate::decide::expired(&policy, f, OffsetDateTime::now_utc()));
    if too_old() {
        return Taken::Expired;
    }
    let held_until = tokio::time::Instant::now() + HOLD_MAX;
    let permit = match turn {
        Turn::Now => match target.try_permit() {
            Some(p) => Some(p),
            None => return Taken::Lane,
        },
        Turn::Wait => tokio::select! {
            p = target.permit() => p,
            _ = tokio::time::sleep_until(held_until) => return Taken::Lane,
            _ = halt.cancelled() => return Taken::Halted,
        },
    };

    // The rate limit after the permit, so a lane's deliveries keep their
    // order.
    if let Some(bucket) = &target.bucket {
        match turn {
            Turn::Now => {
                // Behind the lane's deliveries waiting for a token, if any.
                if target.bucket_waiters.load(Ordering::Acquire) > 0 || bucket.check().is_err() {
                    return Taken::Lane;
                }
            }
            Turn::Wait => {
                let _waiting = Waiting::on(&target.bucket_waiters);
                tokio::select! {
                    _ = bucket.until_ready() => {}
                    _ = tokio::time::sleep_until(held_until) => return Taken::Lane,
                    _ = halt.cancelled() => return Taken::Halted,
                }
            }
        }
    }

    // The circuit last, just before the request: passing it may make this
    // attempt the probe, which must then go out (or be withdrawn).
    loop {
        // A wait in the lane is long enough for another copy of this job (a
        // hand-off whose confirm was lost, then made again) to finish first.
        // Looked at before the circuit, whose pass may make this the probe.
        if turn == Turn::Wait && crate::journal::already_handled(store, &d.id, d.hop) {
            return Taken::Done;
        }
        match (target.circuit.gate(), turn) {
            (Gate::Pass, _) => {
                return Taken::Go(Ticket {
                    _permit: permit,
                    probe: false,
                });
            }
            (Gate::Probe, _) => {
                return Taken::Go(Ticket {
                    _permit: permit,
                    probe: true,
                });
            }
            (Gate::Open(_), Turn::Now) => return Taken::Lane,
            (Gate::Open(wait), Turn::Wait) => {
                let now = tokio::time::Instant::now();
                if now >= held_until {
                    return Taken::Lane;
                }
                tokio::select! {
                    _ = tokio::time::sleep(wait.max(RECHECK_MIN).min(held_until - now)) => {}
                    _ = halt.cancelled() => return Taken::Halted,
                }
                if too_old() {
                    return Taken::Expired;
                }
            }
        }
    }
}

/// Counts a delivery waiting for its bucket until dropped.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn on(count: &'a AtomicUsize) -> Waiting<'a> {
        count.fetch_add(1, Ordering::AcqRel);
        Waiting(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
