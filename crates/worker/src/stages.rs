//! The stages one delivery goes through, in order, each in a file of its
//! own: its place among its alert's deliveries ([`crate::order`]: taken
//! in, then claimed just before its attempt), its turn ([`crate::turn`]: a permit, a token of its rate limit),
//! its body ([`crate::render`]), its circuit's leave ([`crate::gate`]), one
//! attempt ([`crate::attempt`]), what that comes to ([`crate::decide`]),
//! each told to the observer ([`crate::observe`]). The [`Step`] it ends in
//! goes to the hand-off.
//!
//! Every delivery passes here, whatever brought it: a first attempt from
//! an event, a retry back from its wait, a job from its lane, a replay; so
//! the rule that must hold for every delivery of an alert (per-key order)
//! has its place here.

use alertpost_deliver::Client;
use alertpost_event::job::DeadReason;
use alertpost_store::Store;
use bytes::Bytes;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::decide::Decision;
use crate::delivery::Delivery;
use crate::order::{Claim, Claimed, Entry};
use crate::render::Rendering;
use crate::runtime::Ctx;
use crate::step::Step;
use crate::turn::{NotNow, Ticket, Turn};

/// How long a lane's delivery waits for another attempt of its alert
/// before it looks again (the attempt's own timeout bounds it sooner).
const BEHIND_MAX: std::time::Duration = std::time::Duration::from_secs(300);

/// Takes `d` from its order and turn to its step; `client` is the
/// runtime's it came under. `None`: it was waiting its turn when `halt`
/// came, and nothing was done.
pub(crate) async fn run(
    ctx: &Ctx,
    client: &Client,
    d: Delivery<'_>,
    from: Rendering<'_>,
    turn: Turn,
    halt: &CancellationToken,
) -> Option<Step> {
    let order = Entry::of(&ctx.keys, &ctx.store, &d);
    if let Some(order) = &order
        && !order.take_in().await
    {
        return Some(superseded(ctx, d, order));
    }
    let (ticket, body, claim) = match ready(&ctx.store, &d, from, turn, halt, order.as_ref()).await
    {
        Ok(ready) => ready,
        Err(Unready::NotNow(not)) => return not_now(not, d, from, order.as_ref()).await,
        Err(Unready::Template(e)) => {
            tracing::warn!(event_id = %d.event.id, delivery_id = %d.id, integration = %d.target.integration.id, error = %e, "template failed; dead-lettering");
            return Some(d.dead(DeadReason::Template, e));
        }
        Err(Unready::Superseded) => return order.as_ref().map(|order| superseded(ctx, d, order)),
        Err(Unready::Halted) => return None,
    };
    let number = d.attempts + 1;
    // A reference count, not a copy: kept for the record should it fail.
    let tried = crate::attempt::send(client, d.target, d.event, &d.id, number, body.clone()).await;
    // Told before the turn is given back: the circuit hears of a failure
    // before another delivery can pass it.
    let circuit = crate::observe::attempted(d.target, &tried);
    drop(ticket);
    // The clock read once for the decision, the record and the step.
    let started = OffsetDateTime::from(tried.exchange.started_at);
    let first = d.first_attempt_at.unwrap_or(started);
    let now = OffsetDateTime::now_utc();
    let decision = crate::decide::decide(
        &tried.verdict,
        &d.target.integration.retry,
        number,
        first,
        now,
    );
    let attempt = crate::observe::Concluded {
        number,
        tried: &tried,
        started,
        sent: &body,
        decision: &decision,
        circuit,
        now,
    };
    crate::observe::concluded(ctx, &d, attempt);
    let step = match &order {
        // Not tried again for an alert that moved on.
        Some(order) if decision != Decision::Delivered && order.outdated() => {
            let mut d = d;
            d.attempts = number;
            return Some(superseded(ctx, d, order));
        }
        _ => d.concluded(number, &tried, decision, first),
    };
    match (&order, &step) {
        (Some(order), Step::Retry(..)) => order.waits(true).await,
        // A dead letter may be replayed: what supersedes it must be kept.
        (Some(order), Step::Dead(..)) => order.waits(false).await,
        _ => {}
    }
    // The next attempt of its alert goes once this one is carried on.
    drop(claim);
    Some(step)
}

/// Why a delivery did not get as far as its attempt.
enum Unready {
    NotNow(NotNow),
    Template(String),
    Superseded,
    Halted,
}

/// Its turn, its body, its circuit's leave and its claim on its alert, in
/// that order; taken again after waiting for an older attempt of its alert.
async fn ready(
    store: &Store,
    d: &Delivery<'_>,
    from: Rendering<'_>,
    turn: Turn,
    halt: &CancellationToken,
    order: Option<&Entry>,
) -> Result<(Ticket, Bytes, Option<Claim>), Unready> {
    loop {
        let ticket = crate::turn::take(d, turn, halt)
            .await
            .map_err(Unready::NotNow)?;
        let body = crate::render::body(d, from).map_err(|e| Unready::Template(e.to_string()))?;
        let ticket = crate::gate::pass(store, d, ticket, turn, halt)
            .await
            .map_err(Unready::NotNow)?;
        let Some(order) = order else {
            return Ok((ticket, body, None));
        };
        match order.claim() {
            Claimed::Go(claim) => return Ok((ticket, body, Some(claim))),
            other => {
                // The probe, if it was one, goes to the next attempt.
                if ticket.probe {
                    d.target.circuit.unprobe();
                }
                drop(ticket);
                let Claimed::Behind(slot) = other else {
                    return Err(Unready::Superseded);
                };
                // Not waited for in the message window (it would hold up
                // every integration): to its lane, which waits.
                if turn == Turn::Now {
                    return Err(Unready::NotNow(NotNow::Lane));
                }
                tokio::select! {
                    _ = slot.ended(BEHIND_MAX) => {}
                    _ = halt.cancelled() => return Err(Unready::Halted),
                }
            }
        }
    }
}

/// How long a delivery from its alert's shard that cannot start now
/// waits before it comes back (through the shortest delay tier that
/// long): its circuit's cooldown while the circuit is open, so an open
/// circuit's alerts do not go round every second; else a moment (its
/// integration at its concurrency or rate, or an older attempt of its
/// alert in flight). Under `latest` an alert has at most one such waiting.
fn defer_for(d: &Delivery<'_>) -> std::time::Duration {
    if d.target.circuit.is_open() {
        d.target.integration.circuit.cooldown
    } else {
        DEFER_MIN
    }
}

/// See [`defer_for`].
const DEFER_MIN: std::time::Duration = std::time::Duration::from_secs(1);

/// `d` was superseded by a newer event of its alert: recorded and counted.
fn superseded(ctx: &Ctx, d: Delivery<'_>, order: &Entry) -> Step {
    crate::observe::superseded(ctx, &d, order.newest().as_ref());
    Step::Superseded(d.id)
}

/// The step of a delivery that did not get its turn (or its circuit's
/// leave).
async fn not_now(
    not: NotNow,
    d: Delivery<'_>,
    from: Rendering<'_>,
    order: Option<&Entry>,
) -> Option<Step> {
    match not {
        NotNow::Lane => {
            if let Some(order) = order {
                order.waits(false).await;
                if d.on_shard {
                    let due = OffsetDateTime::now_utc() + defer_for(&d);
                    return Some(d.into_wait(due));
                }
            }
            Some(d.into_lane(from.event_json))
        }
        NotNow::Expired => Some(d.expired()),
        NotNow::Done => {
            crate::observe::skipped(d.target);
            Some(Step::Done)
        }
        NotNow::Halted => None,
    }
}
