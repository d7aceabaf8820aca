//! Takes messages from one stream and hands each to a task of its own.
//!
//! Backpressure is at the source: on the events, deliveries and shard
//! streams the next message pulled waits for a permit of the worker's
//! in-flight bound before its task starts (the consumer's prefetch bounds
//! what the broker sends meanwhile); the permit moves into its task and is
//! released when the task ends. A lane's stream takes no such permit: its prefetch (the
//! integration's concurrency) bounds it, so slow integrations never hold
//! the window the others need.
//!
//! No message is pulled while the session cannot publish (RabbitMQ blocks
//! it under an alarm, or its publishing connection is reopening): what it
//! would take might need a hand-off that cannot happen. The broker keeps
//! the messages meanwhile (one pulled just before may be waiting for its
//! permit; its hand-off then waits for publishing to come back).

use std::sync::Arc;

use alertpost_seam::{Inbound, Session, Stream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::dispatch;
use crate::link::Link;
use crate::runtime::Ctx;

/// Why a pump stopped.
#[derive(Debug)]
pub(crate) enum Ended {
    /// Its `halt` came.
    Halted,
    /// The channel or connection broke: what it handed out and did not
    /// settle is back in its queue.
    Broken(String),
    /// The broker cancelled the consumer (its queue was deleted): what it
    /// handed out is the only copy left.
    Cancelled,
}

impl Ended {
    pub fn reason(&self) -> String {
        match self {
            Ended::Halted => "stopped".to_owned(),
            Ended::Broken(e) => e.clone(),
            Ended::Cancelled => "the broker cancelled the consumer".to_owned(),
        }
    }
}

pub(crate) struct Pump<S> {
    pub ctx: Arc<Ctx>,
    pub link: Arc<Link<S>>,
    /// The worker-wide bound; `None` for a lane.
    pub bound: Option<Arc<Semaphore>>,
    /// Where its tasks run (drained on shutdown).
    pub tasks: TaskTracker,
}

impl<S: Session> Pump<S> {
    /// Pumps until `halt` or the stream's end. Tasks get `halt` too, so a
    /// delivery waiting its lane's turn gives up when it comes.
    pub async fn run(&self, stream: &mut S::Stream, halt: &CancellationToken) -> Ended {
        let mut publishing = self.link.session.publishing();
        // False once the session's publishing state can no longer change.
        let mut watching = true;
        loop {
            while watching && !publishing.borrow_and_update().is_ready() {
                tokio::select! {
                    biased;
                    _ = halt.cancelled() => return Ended::Halted,
                    changed = publishing.changed() => watching = changed.is_ok(),
                }
            }
            // Publishing may go while this waits for a message: then look
            // again before taking one (`next` loses nothing when dropped).
            let next = tokio::select! {
                biased;
                _ = halt.cancelled() => return Ended::Halted,
                changed = publishing.changed(), if watching => {
                    watching = changed.is_ok();
                    continue;
                }
                next = stream.next() => next,
            };
            let msg = match next {
                Some(Ok(msg)) => msg,
                Some(Err(e)) => return Ended::Broken(e.to_string()),
                None => return Ended::Cancelled,
            };
            // The permit after the message, not before: a stream with
            // nothing to give (a shard another worker holds) must not sit
            // on a permit the others need. The message waits unsettled,
            // within its consumer's prefetch; on `halt` it goes back.
            let permit = match &self.bound {
                Some(bound) => tokio::select! {
                    biased;
                    _ = halt.cancelled() => return Ended::Halted,
                    // The semaphore is never closed.
                    p = bound.clone().acquire_owned() => p.ok(),
                },
                None => None,
            };
            self.spawn(msg, permit, halt.clone());
        }
    }

    fn spawn(&self, msg: Inbound, permit: Option<OwnedSemaphorePermit>, halt: CancellationToken) {
        let ctx = self.ctx.clone();
        let link = self.link.clone();
        self.tasks.spawn(async move {
            let lost = link.lost.clone();
            tokio::select! {
                _ = dispatch::handle(ctx, link, msg, halt) => {}
                // Draining ran out of time: the message goes back.
                _ = lost.cancelled() => {}
            }
            drop(permit);
        });
    }
}
