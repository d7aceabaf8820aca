//! The shards this worker holds: a consumer each, under the worker's
//! in-flight bound, kept in step with what the backend says this worker
//! should hold ([`alertpost_seam::Session::shards`]) as workers come and
//! go. A shard let go stops taking messages, lets those it took finish,
//! then closes its channel, without cancelling its consumer first (a
//! cancel makes the next worker's consumer active at once): only then does
//! RabbitMQ make the next worker's consumer the active one. (A consuming
//! connection that drops hands the shard on at once: the requests this
//! worker already sent can cross the next one's.)

use std::collections::BTreeMap;
use std::sync::Arc;

use alertpost_seam::{Session, Source};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::link::Link;
use crate::runtime::Ctx;

pub(crate) struct Holdings<S> {
    ctx: Arc<Ctx>,
    link: Arc<Link<S>>,
    bound: Arc<Semaphore>,
    prefetch: u16,
    /// Cancelled to stop them all; each shard's own token is a child.
    halt: CancellationToken,
    running: BTreeMap<u16, (CancellationToken, JoinHandle<()>)>,
    /// Shards let go, finishing their deliveries.
    stopping: Vec<JoinHandle<()>>,
}

impl<S: Session> Holdings<S> {
    pub fn new(
        ctx: Arc<Ctx>,
        link: Arc<Link<S>>,
        (bound, prefetch): (Arc<Semaphore>, u16),
        halt: CancellationToken,
    ) -> Holdings<S> {
        Holdings {
            ctx,
            link,
            bound,
            prefetch,
            halt,
            running: BTreeMap::new(),
            stopping: Vec::new(),
        }
    }

    /// A consumer for each shard of `held`, none for the others.
    pub fn reconcile(&mut self, held: &[u16]) {
        let gone: Vec<u16> = self
            .running
            .keys()
            .filter(|n| !held.contains(n))
            .copied()
            .collect();
        for n in gone {
            if let Some((halt, handle)) = self.running.remove(&n) {
                halt.cancel();
                self.stopping.push(handle);
            }
        }
        for &n in held {
            if self.running.contains_key(&n) {
                continue;
            }
            let halt = self.halt.child_token();
            let handle = tokio::spawn(crate::lanes::consume(
                self.ctx.clone(),
                self.link.clone(),
                (Source::Shard(n), self.prefetch, Some(self.bound.clone())),
                halt.clone(),
            ));
            self.running.insert(n, (halt, handle));
        }
        self.stopping.retain(|h| !h.is_finished());
        let n = i64::try_from(self.running.len()).unwrap_or(i64::MAX);
        self.ctx.metrics.shards_held.set(n);
    }

    /// Lets every shard go; each ends once its deliveries in flight have.
    pub fn stop(self) -> Vec<JoinHandle<()>> {
        self.halt.cancel();
        self.ctx.metrics.shards_held.set(0);
        let mut all = self.stopping;
        all.extend(self.running.into_values().map(|(_, h)| h));
        all
    }
}
