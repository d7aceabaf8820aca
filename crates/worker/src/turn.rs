//! The turn stage: before a delivery's body is made, its integration's
//! permit (a place within its concurrency), then a token of its rate
//! limit; its circuit's leave comes last, after the body
//! (the `gate` stage). A delivery gets its turn one of two ways ([`Turn`]):
//! - `Now` (from the events, or a job back from a wait): only if each is
//!   free at once; otherwise it goes to the integration's lane, and the
//!   message it came in does not wait for it;
//! - `Wait` (from its lane): it waits for a permit, in order, then for the
//!   bucket and (at the gate) for the circuit, up to [`HOLD_MAX`] in all
//!   (then back to the end of its lane); when the session stops, it gives
//!   up and its message goes back to the lane.
//!
//! Waiting for the bucket or the circuit is not an attempt: it never
//! counts toward `max_attempts` or the circuit. A delivery past its
//! `max_age` before it waits is expired.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;

use crate::delivery::Delivery;

/// A delivery waits its lane's turn at most this long, then goes to the
/// back of its lane: no message is held near RabbitMQ's consumer timeout
/// (30 minutes by default), however long a circuit stays open.
const HOLD_MAX: Duration = Duration::from_secs(300);

/// How a delivery gets its turn; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Turn {
    Now,
    Wait,
}

/// Why a delivery did not get its turn (or, at the gate, its circuit's
/// leave).
pub(crate) enum NotNow {
    /// To its integration's lane.
    Lane,
    /// Past its `max_age` before it could be tried.
    Expired,
    /// Another copy of its job finished while it waited (the journal says
    /// so): nothing to do.
    Done,
    /// The session stopped while it waited: nothing was done.
    Halted,
}

/// A delivery's turn, held until its attempt ends: its permit, and how
/// long it may still wait (at the gate).
pub(crate) struct Ticket {
    _permit: Option<OwnedSemaphorePermit>,
    pub held_until: tokio::time::Instant,
    /// Its circuit's gate made it the probe (set by the gate stage).
    pub probe: bool,
}

/// Asks for `d`'s permit and rate-limit token; see the module docs.
pub(crate) async fn take(
    d: &Delivery<'_>,
    turn: Turn,
    halt: &CancellationToken,
) -> Result<Ticket, NotNow> {
    let target = d.target;
    let policy = target.integration.retry;
    let first = d.first_attempt_at;
    let too_old =
        || first.is_some_and(|f| crate::decide::expired(&policy, f, OffsetDateTime::now_utc()));
    if too_old() {
        return Err(NotNow::Expired);
    }
    let held_until = tokio::time::Instant::now() + HOLD_MAX;
    let permit = match turn {
        Turn::Now => match target.try_permit() {
            Some(p) => Some(p),
            None => return Err(NotNow::Lane),
        },
        Turn::Wait => tokio::select! {
            p = target.permit() => p,
            _ = tokio::time::sleep_until(held_until) => return Err(NotNow::Lane),
            _ = halt.cancelled() => return Err(NotNow::Halted),
        },
    };

    // The rate limit after the permit, so a lane's deliveries keep their
    // order.
    if let Some(bucket) = &target.bucket {
        match turn {
            Turn::Now => {
                // Behind the lane's deliveries waiting for a token, if any.
                if target.bucket_waiters.load(Ordering::Acquire) > 0 || bucket.check().is_err() {
                    return Err(NotNow::Lane);
                }
            }
            Turn::Wait => {
                let _waiting = Waiting::on(&target.bucket_waiters);
                tokio::select! {
                    _ = bucket.until_ready() => {}
                    _ = tokio::time::sleep_until(held_until) => return Err(NotNow::Lane),
                    _ = halt.cancelled() => return Err(NotNow::Halted),
                }
            }
        }
    }

    Ok(Ticket {
        _permit: permit,
        held_until,
        probe: false,
    })
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
