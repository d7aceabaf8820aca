//! The stages one delivery goes through, in order, each in a file of its
//! own: its turn ([`crate::turn`]: a permit, a token of its rate limit, its
//! circuit's leave), its body ([`crate::render`]), one attempt
//! ([`crate::attempt`]), what that comes to ([`crate::decide`], pure), told
//! to the observer ([`crate::observe`]). The [`Step`] it ends in goes to
//! the hand-off.
//!
//! Every delivery passes here, whatever brought it: a first attempt from
//! an event, a retry back from its wait, a job from its lane, a replay.
//! What must hold for every delivery of an alert (its order among the
//! alert's other deliveries) belongs here, before the turn.

use alertpost_deliver::Client;
use alertpost_event::job::DeadReason;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::delivery::Delivery;
use crate::render::Rendering;
use crate::runtime::Ctx;
use crate::step::Step;
use crate::turn::{Taken, Turn};

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
    let ticket = match crate::turn::take(&ctx.store, &d, turn, halt).await {
        Taken::Go(ticket) => ticket,
        Taken::Lane => return Some(d.into_lane(from.event_json)),
        Taken::Expired => return Some(d.expired()),
        Taken::Done => {
            crate::observe::skipped(d.target);
            return Some(Step::Done);
        }
        Taken::Halted => return None,
    };
    let body = match crate::render::body(&d, from) {
        Ok(body) => body,
        Err(e) => {
            ticket.unused(d.target);
            tracing::warn!(event_id = %d.event.id, delivery_id = %d.id, integration = %d.target.integration.id, error = %e, "template failed; dead-lettering");
            return Some(d.dead(DeadReason::Template, e.to_string()));
        }
    };
    let number = d.attempts + 1;
    // A reference count, not a copy: kept for the record should it fail.
    let tried = crate::attempt::send(client, d.target, d.event, &d.id, number, body.clone()).await;
    let started = OffsetDateTime::from(tried.exchange.started_at);
    let decision = crate::decide::decide(
        &tried.verdict,
        &d.target.integration.retry,
        number,
        d.first_attempt_at.unwrap_or(started),
        OffsetDateTime::now_utc(),
    );
    // Told before the turn is given back: the circuit hears of a failure
    // before another delivery can pass it.
    crate::observe::attempted(ctx, &d, number, &tried, &body, &decision);
    drop(ticket);
    Some(d.concluded(number, &tried, decision))
}
