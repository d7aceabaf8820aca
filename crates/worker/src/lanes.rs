//! One consumer per integration's lane, kept in step with the
//! configuration: started for a new integration, restarted when its
//! concurrency (the lane's prefetch) changes or it is enabled or disabled
//! (deliveries waiting their turn give up, go back to the lane, and are
//! taken again under the new config), stopped when it leaves the config. A
//! disabled integration keeps its consumer: its lane drains into the dead
//! queue (reason `disabled`).
//!
//! A lane consumer that ends while the connection is up (its queue was
//! deleted, its channel closed) declares its queue and starts again after a
//! pause that doubles up to 30 s; it takes nothing else down.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alertpost_broker::{Session, Source, Stream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::handoff::Link;
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
/// integration is enabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shape {
    prefetch: u16,
    enabled: bool,
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
        let wanted: BTreeMap<String, Shape> = runtime
            .config
            .integrations
            .iter()
            .map(|i| {
                let shape = Shape {
                    // Concurrency is at most 1024 (checked at load).
                    prefetch: u16::try_from(i.concurrency).unwrap_or(u16::MAX),
                    enabled: i.enabled,
                };
                (i.id.clone(), shape)
            })
            .collect();
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
                id.clone(),
                shape.prefetch,
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

/// Consumes one lane until `halt`, or until the connection is gone.
async fn consume<S: Session>(
    ctx: Arc<Ctx>,
    link: Arc<Link<S>>,
    id: String,
    prefetch: u16,
    halt: CancellationToken,
) {
    let source = Source::Lane(id.clone());
    let mut pause = RESTART_MIN;
    loop {
        let consumed = tokio::select! {
            biased;
            _ = halt.cancelled() => return,
            s = link.session.consume(&source, prefetch) => s,
        };
        match consumed {
            Ok(mut stream) => {
                let since = Instant::now();
                let tasks = TaskTracker::new();
                let pump = Pump {
                    ctx: ctx.clone(),
                    link: link.clone(),
                    bound: None,
                    tasks: tasks.clone(),
                };
                let ended = pump.run(&mut stream, &halt).await;
                stream.cancel().await;
                // Its deliveries settle on its channel: close it after them.
                tasks.close();
                tasks.wait().await;
                stream.close().await;
                match ended {
                    Ended::Halted => return,
                    Ended::Lost(reason) => {
                        tracing::warn!(lane = %id, %reason, "lane consumer ended");
                    }
                }
                if since.elapsed() > RESTART_MAX {
                    pause = RESTART_MIN;
                }
            }
            Err(e) => tracing::warn!(lane = %id, error = %e, "cannot consume the lane"),
        }
        if !link.session.is_open() {
            // The connection is gone: the supervisor starts over.
            return;
        }
        tokio::select! {
            _ = halt.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(RESTART_MAX);
        // Its queue may be what went away.
        if let Err(e) = link.session.declare(std::slice::from_ref(&id)).await {
            tracing::warn!(lane = %id, error = %e, "cannot declare the lane");
        }
    }
}
