//! One consumer per integration's lane, kept in step with the
//! configuration: started for a new integration, restarted when its
//! concurrency (the lane's prefetch) changes or it is enabled or disabled
//! (deliveries waiting their turn give up, go back to the lane, and are
//! taken again under the new config). A disabled integration keeps its
//! consumer: its lane drains into the dead queue (reason `disabled`); so
//! does one removed by a reload (`unknown_integration`), until the worker
//! stops. A worker started without an integration does not know its lane:
//! disable an integration before removing it.
//!
//! A lane consumer that ends while the connection is up starts again after
//! a pause that doubles up to 30 s, declaring its queue first; it takes
//! nothing else down. If its channel broke, its deliveries waiting their
//! turn give up (the broker has put them back); if the broker cancelled it
//! (its queue was deleted), they hold the only copy and go on.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alertpost_seam::{Session, Source, Stream};
use futures_util::future::join_all;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::link::Link;
use crate::pump::{Ended, Pump};
use crate::runtime::{Ctx, Runtime};

const RESTART_MIN: Duration = Duration::from_millis(500);
const RESTART_MAX: Duration = Duration::from_secs(30);

pub(crate) struct Lanes<S> {
    ctx: Arc<Ctx>,
    link: Arc<Link<S>>,
    /// Cancelled to stop them all; each lane's own token is a child.
    halt: CancellationToken,
    running: BTreeMap<String, Lane>,
    /// Lanes stopped or replaced, finishing their deliveries.
    stopping: Vec<JoinHandle<()>>,
}

struct Lane {
    shape: Shape,
    halt: CancellationToken,
    handle: JoinHandle<()>,
}

/// What a lane's consumer depends on: its prefetch, and whether its
/// integration is enabled, disabled, or gone from the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shape {
    prefetch: u16,
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Enabled,
    Disabled,
    Removed,
}

impl<S: Session> Lanes<S> {
    pub fn new(ctx: Arc<Ctx>, link: Arc<Link<S>>, halt: CancellationToken) -> Lanes<S> {
        Lanes {
            ctx,
            link,
            halt,
            running: BTreeMap::new(),
            stopping: Vec::new(),
        }
    }

    /// One consumer per integration of `runtime`, with its concurrency as
    /// prefetch.
    pub fn reconcile(&mut self, runtime: &Runtime) {
        let mut wanted: BTreeMap<String, Shape> = runtime
            .config
            .integrations
            .iter()
            .map(|i| {
                let shape = Shape {
                    // Concurrency is at most 1024 (checked at load).
                    prefetch: u16::try_from(i.concurrency).unwrap_or(u16::MAX),
                    state: if i.enabled {
                        State::Enabled
                    } else {
                        State::Disabled
                    },
                };
                (i.id.clone(), shape)
            })
            .collect();
        // A lane whose integration left the config is still consumed (its
        // deliveries dead-letter), with a consumer started anew, so those
        // waiting under the old config give up and are taken again.
        for (id, lane) in &self.running {
            wanted.entry(id.clone()).or_insert(Shape {
                prefetch: lane.shape.prefetch,
                state: State::Removed,
            });
        }
        let stale: Vec<String> = self
            .running
            .iter()
            .filter(|(id, lane)| wanted.get(*id) != Some(&lane.shape))
            .map(|(id, _)| id.clone())
            .collect();
        for id in stale {
            if let Some(lane) = self.running.remove(&id) {
                lane.halt.cancel();
                self.stopping.push(lane.handle);
            }
        }
        for (id, shape) in wanted {
            if self.running.contains_key(&id) {
                continue;
            }
            let halt = self.halt.child_token();
            let handle = tokio::spawn(consume(
                self.ctx.clone(),
                self.link.clone(),
                (Source::Lane(id.clone()), shape.prefetch, None),
                halt.clone(),
            ));
            self.running.insert(
                id,
                Lane {
                    shape,
                    halt,
                    handle,
                },
            );
        }
        self.stopping.retain(|h| !h.is_finished());
    }

    /// Stops every lane; each ends once its deliveries in flight have.
    pub fn stop(self) -> Vec<JoinHandle<()>> {
        self.halt.cancel();
        let mut all = self.stopping;
        all.extend(self.running.into_values().map(|l| l.handle));
        all
    }
}

/// Consumes one lane (or, for the holdings, one shard, under the
/// worker's in-flight `bound`) until `halt`, or until the connection is
/// gone.
pub(crate) async fn consume<S: Session>(
    ctx: Arc<Ctx>,
    link: Arc<Link<S>>,
    (source, prefetch, bound): (Source, u16, Option<Arc<Semaphore>>),
    halt: CancellationToken,
) {
    let mut pause = RESTART_MIN;
    // Streams that ended, kept open until their deliveries have settled.
    let mut closing: Vec<JoinHandle<()>> = Vec::new();
    loop {
        let consumed = tokio::select! {
            biased;
            _ = halt.cancelled() => break,
            s = link.session.consume(&source, prefetch) => s,
        };
        match consumed {
            Ok(mut stream) => {
                let since = Instant::now();
                let tasks = TaskTracker::new();
                // Its own token: a broken stream's waiting deliveries give up.
                let stream_halt = halt.child_token();
                let pump = Pump {
                    ctx: ctx.clone(),
                    link: link.clone(),
                    bound: bound.clone(),
                    tasks: tasks.clone(),
                };
                let ended = pump.run(&mut stream, &stream_halt).await;
                // Not a shard's: cancelling a single active consumer makes
                // the next worker's active at once, while this one's
                // deliveries are still in flight (RabbitMQ's quorum queues
                // do so). A shard's goes only when its channel closes,
                // after them; what it took and did not start goes back then.
                if !matches!(source, Source::Shard(_)) {
                    stream.cancel().await;
                }
                if let Ended::Broken(_) = ended {
                    stream_halt.cancel();
                }
                if !matches!(ended, Ended::Halted) {
                    tracing::warn!(%source, reason = %ended.reason(), "consumer ended; starting it again");
                }
                // Its deliveries settle on its channel: close it after them,
                // while a new stream takes over.
                closing.retain(|c| !c.is_finished());
                closing.push(tokio::spawn(async move {
                    tasks.close();
                    tasks.wait().await;
                    stream.close().await;
                }));
                if matches!(ended, Ended::Halted) {
                    break;
                }
                if since.elapsed() > RESTART_MAX {
                    pause = RESTART_MIN;
                }
            }
            Err(e) => tracing::warn!(%source, error = %e, "cannot consume"),
        }
        if !link.session.is_open() {
            // The connection is gone: the supervisor starts over.
            break;
        }
        tokio::select! {
            _ = halt.cancelled() => break,
            _ = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(RESTART_MAX);
        // Its queue may be what went away.
        let lanes = match &source {
            Source::Lane(id) => std::slice::from_ref(id),
            _ => &[],
        };
        if let Err(e) = link.session.declare(lanes).await {
            tracing::warn!(%source, error = %e, "cannot declare its queue");
        }
    }
    // Done once every delivery it took has settled (the drain waits here).
    join_all(closing).await;
}
