//! The gate stage: the circuit's leave, last, just before the request
//! (passing it may make this attempt the probe, which must then go out).
//! `Now`: an open circuit sends the delivery to its lane. `Wait` (from its
//! lane): it waits for the circuit, within its turn's hold, looking at the
//! journal first each time (another copy of its job may have finished
//! meanwhile) and at its `max_age` after each wait.

use std::time::Duration;

use alertpost_store::Store;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::circuit::Gate;
use crate::delivery::Delivery;
use crate::turn::{NotNow, Ticket, Turn};

/// A delivery waiting for its circuit looks again at most this often,
/// whatever the cooldown (a tiny one would make it spin).
const RECHECK_MIN: Duration = Duration::from_millis(50);

/// Passes `d` through its circuit with its `ticket`; see the module docs.
/// `store`: the journal, looked at while a lane's delivery waits.
pub(crate) async fn pass(
    store: &Store,
    d: &Delivery<'_>,
    mut ticket: Ticket,
    turn: Turn,
    halt: &CancellationToken,
) -> Result<Ticket, NotNow> {
    let target = d.target;
    let policy = target.integration.retry;
    let first = d.first_attempt_at;
    let too_old =
        || first.is_some_and(|f| crate::decide::expired(&policy, f, OffsetDateTime::now_utc()));
    loop {
        // A wait in the lane is long enough for another copy of this job (a
        // hand-off whose confirm was lost, then made again) to finish first.
        // Looked at before the circuit, whose pass may make this the probe.
        if turn == Turn::Wait && crate::journal::already_handled(store, &d.id, d.hop) {
            return Err(NotNow::Done);
        }
        match (target.circuit.gate(), turn) {
            (Gate::Pass, _) => return Ok(ticket),
            (Gate::Probe, _) => {
                ticket.probe = true;
                return Ok(ticket);
            }
            (Gate::Open(_), Turn::Now) => return Err(NotNow::Lane),
            (Gate::Open(wait), Turn::Wait) => {
                let now = tokio::time::Instant::now();
                if now >= ticket.held_until {
                    return Err(NotNow::Lane);
                }
                tokio::select! {
                    _ = tokio::time::sleep(wait.max(RECHECK_MIN).min(ticket.held_until - now)) => {}
                    _ = halt.cancelled() => return Err(NotNow::Halted),
                }
                if too_old() {
                    return Err(NotNow::Expired);
                }
            }
        }
    }
}
