//! The stages one delivery goes through, in order, each in a file of its
//! own: its turn ([`crate::turn`]: a permit, a token of its rate limit),
//! its body ([`crate::render`]), its circuit's leave ([`crate::gate`]), one
//! attempt ([`crate::attempt`]), what that comes to ([`crate::decide`]),
//! each told to the observer ([`crate::observe`]). The [`Step`] it ends in
//! goes to the hand-off.
//!
//! Every delivery passes here, whatever brought it: a first attempt from
//! an event, a retry back from its wait, a job from its lane, a replay. A
//! rule that must hold for every delivery of an alert (per-key order) has
//! its place here, before the turn.

use alertpost_deliver::Client;
use alertpost_event::job::DeadReason;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::delivery::Delivery;
use crate::render::Rendering;
use crate::runtime::Ctx;
use crate::step::Step;
use crate::turn::{NotNow, Turn};

/// Takes `d` from its turn to its step; `client` is the runtime's it came
/// under. `None`: it was waiting its turn when `halt` came, and nothing
/// was done.
pub(crate) async fn run(
    ctx: &Ctx,
    client: &Client,
    d: Delivery<'_>,
    from: Rendering<'_>,
    turn: Turn,
    halt: &CancellationToken,
) -> Option<Step> {
    let ticket = match crate::turn::take(&d, turn, halt).await {
        Ok(ticket) => ticket,
        Err(not) => return not_now(not, d, from),
    };
    let body = match crate::render::body(&d, from) {
        Ok(body) => body,
        Err(e) => {
            tracing::warn!(event_id = %d.event.id, delivery_id = %d.id, integration = %d.target.integration.id, error = %e, "template failed; dead-lettering");
            return Some(d.dead(DeadReason::Template, e.to_string()));
        }
    };
    let ticket = match crate::gate::pass(&ctx.store, &d, ticket, turn, halt).await {
        Ok(ticket) => ticket,
        Err(not) => return not_now(not, d, from),
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
    Some(d.concluded(number, &tried, decision, first))
}

/// The step of a delivery that did not get its turn (or its circuit's
/// leave).
fn not_now(not: NotNow, d: Delivery<'_>, from: Rendering<'_>) -> Option<Step> {
    match not {
        NotNow::Lane => Some(d.into_lane(from.event_json)),
        NotNow::Expired => Some(d.expired()),
        NotNow::Done => {
            crate::observe::skipped(d.target);
            Some(Step::Done)
        }
        NotNow::Halted => None,
    }
}
