//! The hand-off: the deliveries of one message that are not done go to a
//! delay tier or the dead queue, each publish confirmed; then the message
//! may be acked.

use alertpost_broker::{Destination, Outgoing, Publisher};
use alertpost_event::job::{DEAD_SCHEMA, JOB_SCHEMA};
use alertpost_store::Finished;

use crate::dispatch::{Ctx, Settle, Step};

/// Publishes what `steps` hand on (pipelined confirms) and says how to
/// settle the message: `Ack` only when every publish is confirmed.
pub(crate) async fn hand_off(ctx: &Ctx, publisher: &Publisher, steps: Vec<Step>) -> Settle {
    let mut pending = Vec::new();
    for step in &steps {
        let (to, body, kind, id) = match step {
            Step::Done => continue,
            Step::Retry { job, tier } => (
                Destination::Retry(*tier),
                job.to_json(),
                JOB_SCHEMA,
                &job.delivery_id,
            ),
            Step::Dead(letter) => (Destination::Dead, letter.to_json(), DEAD_SCHEMA, &letter.id),
        };
        let msg = Outgoing {
            body: &body,
            kind,
            message_id: id,
        };
        match publisher.send(&to, &msg).await {
            Ok(p) => pending.push(p),
            Err(e) => {
                tracing::error!(error = %e, "hand-off failed; the message goes back to its queue");
                return Settle::Requeue;
            }
        }
    }
    let mut confirmed = true;
    for p in pending {
        if let Err(e) = p.confirmed().await {
            tracing::error!(error = %e, "hand-off not confirmed; the message goes back to its queue");
            confirmed = false;
        }
    }
    if !confirmed {
        return Settle::Requeue;
    }
    // Confirmed: now the dead letters are this worker's record, and their
    // deliveries finished (a redelivery of the message skips them).
    for step in &steps {
        if let Step::Dead(letter) = step {
            // A sled insert: on the blocking pool, not a runtime thread
            // (dead letters are rare; the copy costs nothing that matters).
            let (store, copy) = (ctx.store.clone(), letter.clone());
            match tokio::task::spawn_blocking(move || store.record_dead(&copy)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cannot record a dead letter in the store")
                }
                Err(e) => tracing::warn!(error = %e, "recording a dead letter failed"),
            }
            if letter.job.is_some() {
                ctx.store.finish(&letter.id, Finished::Dead);
            }
        }
    }
    Settle::Ack
}
