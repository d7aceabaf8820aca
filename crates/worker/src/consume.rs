//! One session's worth of consuming: the events, the deliveries and the
//! shards under the worker's in-flight bound (each consumer has a prefetch
//! equal to the bound, so any stream alone can fill the worker), each integration's
//! lane under that integration's concurrency ([`crate::lanes`]), and
//! whether the session can publish, into readiness. A reload that adds,
//! removes or resizes integrations declares and re-consumes their lanes
//! without stopping the rest.
//!
//! When the session ends (shutdown, a lost connection): stop taking
//! messages, let the tasks in flight finish within the drain timeout
//! (their hand-offs and acks included), then close. What is not finished
//! by then is left unsettled and the backend hands it out again.

use std::sync::Arc;
use std::time::Duration;

use alertpost_seam::{BrokerError, Session, Source, Stream};
use futures_util::future::join_all;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::health::Health;
use crate::holdings::Holdings;
use crate::lanes::Lanes;
use crate::link::Link;
use crate::pump::{Ended, Pump};
use crate::runtime::{Ctx, Runtime};

/// The worker's bounds, from `[worker]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub max_inflight: usize,
    pub drain_timeout: Duration,
}

/// One session's worth of consuming; returns why it ended.
pub(crate) async fn consume<S: Session>(
    session: S,
    ctx: &Arc<Ctx>,
    health: &Arc<Health>,
    stop: &CancellationToken,
    limits: Limits,
) -> Ended {
    let lost = CancellationToken::new();
    let link = Arc::new(Link::new(session, lost.clone()));
    let mut configs = ctx.current.watch();
    let runtime = configs.borrow_and_update().clone();
    let streams = match open_streams(&link, &runtime.lanes(), limits).await {
        Ok(streams) => streams,
        Err(e) => {
            link.session.close().await;
            return Ended::Broken(e.to_string());
        }
    };
    let watcher = watch_publishing(&link, health, ctx);

    // When one stream ends (shutdown, a lost connection), `halt` ends the
    // rest; waiting deliveries give up.
    let halt = stop.child_token();
    let bound = Arc::new(Semaphore::new(limits.max_inflight));
    // Tasks are tracked, not joined one by one: a finished task wakes
    // no one, and shutdown waits for all of them at once.
    let tasks = TaskTracker::new();
    let start = |mut stream: S::Stream| {
        let pump = Pump {
            ctx: ctx.clone(),
            link: link.clone(),
            bound: Some(bound.clone()),
            tasks: tasks.clone(),
        };
        let halt = halt.clone();
        tokio::spawn(async move {
            let ended = pump.run(&mut stream, &halt).await;
            (ended, stream)
        })
    };
    let pumps: Vec<_> = streams.into_iter().map(start).collect();
    // Operational events go out through this session while it lasts.
    {
        let (ctx, link, halt) = (ctx.clone(), link.clone(), halt.child_token());
        tokio::spawn(async move { ctx.operational.publish(&*link.session, halt).await });
    }
    let mut lanes = Lanes::new(ctx.clone(), link.clone(), halt.child_token());
    lanes.reconcile(&runtime);
    // The shards this worker holds, on a sharded backend.
    let prefetch = u16::try_from(limits.max_inflight).unwrap_or(u16::MAX);
    let mut held = link.session.shards();
    let mut holdings = Holdings::new(
        ctx.clone(),
        link.clone(),
        (bound.clone(), prefetch),
        halt.child_token(),
    );
    if let Some(held) = &mut held {
        holdings.reconcile(&held.borrow_and_update());
    }
    health.set_consuming(true);
    let mut keep = Keep {
        configs: &mut configs,
        held: held.as_mut(),
        lanes: &mut lanes,
        holdings: &mut holdings,
    };
    let (first, rest) = until_one_ends(pumps, &mut keep, &link).await;
    halt.cancel();
    // Said now, not after the drain: the others subscribe to its shards,
    // and each passes to one of them as soon as its channel closes.
    link.session.leave().await;
    let rest = join_all(rest).await;
    health.set_consuming(false);
    let (ended, streams) = why_ended::<S>(first, rest);
    for s in &streams {
        s.cancel().await;
    }
    drain(tasks, (lanes, holdings), limits.drain_timeout, &lost).await;
    watcher.abort();
    health.set_not_publishing(None);
    ctx.metrics.broker_blocked.set(0);
    link.session.close().await;
    ended
}

/// The lanes of `lanes` declared, then the events and the deliveries
/// consumed under the in-flight bound.
async fn open_streams<S: Session>(
    link: &Link<S>,
    lanes: &[String],
    limits: Limits,
) -> Result<Vec<S::Stream>, BrokerError> {
    // The bound is at most 10000 (checked at load), within u16.
    let prefetch = u16::try_from(limits.max_inflight).unwrap_or(u16::MAX);
    link.session.declare(lanes).await?;
    let mut streams = Vec::with_capacity(2);
    for source in [Source::Events, Source::Deliveries] {
        streams.push(link.session.consume(&source, prefetch).await?);
    }
    Ok(streams)
}

/// Whether the session can publish, into `/readyz` and the gauge, as it
/// changes.
fn watch_publishing<S: Session>(
    link: &Link<S>,
    health: &Arc<Health>,
    ctx: &Ctx,
) -> tokio::task::JoinHandle<()> {
    let mut publishing = link.session.publishing();
    let health = health.clone();
    let gauge = ctx.metrics.broker_blocked.clone();
    tokio::spawn(async move {
        loop {
            let reason = publishing.borrow_and_update().reason();
            gauge.set(i64::from(reason.is_some()));
            health.set_not_publishing(reason);
            if publishing.changed().await.is_err() {
                break;
            }
        }
    })
}

/// A pump's task: why it ended, and its stream (to be cancelled).
type PumpTask<S> = JoinHandle<(Ended, <S as Session>::Stream)>;
type Pumped<S> = Result<(Ended, <S as Session>::Stream), tokio::task::JoinError>;

/// What is kept in step while the pumps run: the lanes with the config,
/// the shards held with the fleet.
struct Keep<'a, S> {
    configs: &'a mut watch::Receiver<Arc<Runtime>>,
    held: Option<&'a mut watch::Receiver<Vec<u16>>>,
    lanes: &'a mut Lanes<S>,
    holdings: &'a mut Holdings<S>,
}

/// Waits for the first of the pumps to end, keeping the lanes in step
/// with reloads and the shards with the fleet meanwhile; returns what it
/// came to, and the other pumps.
async fn until_one_ends<S: Session>(
    pumps: Vec<PumpTask<S>>,
    keep: &mut Keep<'_, S>,
    link: &Link<S>,
) -> (Pumped<S>, Vec<PumpTask<S>>) {
    let mut watching = true;
    let mut any = futures_util::future::select_all(pumps);
    loop {
        let fleet = async {
            match keep.held.as_deref_mut() {
                Some(held) => held.changed().await.is_ok(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            (r, _, rest) = &mut any => return (r, rest),
            true = fleet => {
                if let Some(held) = keep.held.as_deref_mut() {
                    keep.holdings.reconcile(&held.borrow_and_update());
                }
            }
            changed = keep.configs.changed(), if watching => {
                if changed.is_err() {
                    watching = false;
                    continue;
                }
                let runtime = keep.configs.borrow_and_update().clone();
                // New lanes exist before anything is handed to them; one a
                // hand-off finds missing meanwhile is declared by it.
                if let Err(e) = link.session.declare(&runtime.lanes()).await {
                    tracing::warn!(error = %e, "cannot declare the lanes of the new configuration");
                }
                keep.lanes.reconcile(&runtime);
            }
        }
    }
}

/// Why the session ended: the first pump's reason (or a task that
/// failed); and the streams, to be cancelled.
fn why_ended<S: Session>(first: Pumped<S>, rest: Vec<Pumped<S>>) -> (Ended, Vec<S::Stream>) {
    let mut ended = Ended::Halted;
    let mut streams = Vec::new();
    for (i, joined) in std::iter::once(first).chain(rest).enumerate() {
        match joined {
            Ok((e, stream)) => {
                streams.push(stream);
                if i == 0 {
                    ended = e;
                }
            }
            Err(e) => ended = Ended::Broken(format!("a consumer task failed: {e}")),
        }
    }
    (ended, streams)
}

/// Lets the deliveries in flight (the pumps' and the lanes') finish within
/// `timeout`, then `lost` stops the rest, whose messages go back. On
/// shutdown, and as well when the connection is lost: their hand-offs and
/// acks fail with a lost connection, but the journal records what was
/// done, so the messages that come back are not done twice.
async fn drain<S: Session>(
    tasks: TaskTracker,
    (lanes, holdings): (Lanes<S>, Holdings<S>),
    timeout: Duration,
    lost: &CancellationToken,
) {
    tasks.close();
    let mut lanes = lanes.stop();
    lanes.extend(holdings.stop());
    tracing::info!(in_flight = tasks.len(), "draining");
    let drained = async {
        tasks.wait().await;
        join_all(lanes).await;
    };
    tokio::pin!(drained);
    if tokio::time::timeout(timeout, &mut drained).await.is_err() {
        tracing::warn!(
            left = tasks.len(),
            "drain timeout reached; unfinished messages go back to the queue"
        );
        lost.cancel();
        drained.await;
    }
}
