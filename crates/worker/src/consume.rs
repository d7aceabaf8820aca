//! Opens a session with the backend, consumes, reopens after a failure;
//! drains on shutdown.
//!
//! A session consumes the events and the deliveries under the worker's
//! in-flight bound (each consumer has a prefetch equal to the bound, so
//! either stream alone can fill the worker), and each integration's lane
//! under that integration's concurrency ([`crate::lanes`]). A reload that
//! adds, removes or resizes integrations declares and re-consumes their
//! lanes without stopping the rest.
//!
//! Shutdown: stop taking messages, let the tasks in flight finish within
//! the drain timeout (their hand-offs and acks included), then close. What
//! is not finished by then is left unsettled and the backend hands it out
//! again.
//!
//! A lost connection: the session's attempts in flight finish and are
//! journaled (their acks fail, the messages come back, and the journal
//! keeps what was done from being done twice), but nothing more is handed
//! on for them (the broker is handing them out again: see
//! [`crate::handoff`]), bounded by the drain timeout; then the supervisor
//! reopens with a capped doubling pause. A lost *publishing* connection
//! does not end the session: the backend reopens it while consumption
//! pauses ([`crate::pump`]).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use alertpost_config::Config;
use alertpost_metrics::WorkerMetrics;
use alertpost_seam::{Backend, BrokerError, Session, Source, Stream};
use alertpost_store::{Retention, Store};
use futures_util::future::join_all;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::handoff::Link;
use crate::health::Health;
use crate::lanes::Lanes;
use crate::pump::{Ended, Pump};
use crate::runtime::{Ctx, Current, Runtime, RuntimeError};

/// Pause before the first reconnection attempt; doubles up to the max.
const RECONNECT_MIN: Duration = Duration::from_millis(500);
const RECONNECT_MAX: Duration = Duration::from_secs(30);

/// How a worker runs (the broker is the [`Backend`] given beside).
#[derive(Debug)]
pub struct WorkerOptions {
    pub config: Config,
    /// Where `/healthz` and `/readyz` are served; none: no admin server.
    pub admin: Option<tokio::net::TcpListener>,
    /// New configurations to switch to (SIGHUP in `main`), already
    /// validated. Messages in flight finish under the one they started with.
    pub reload: Option<mpsc::Receiver<Config>>,
    /// This worker's record (its `--data-dir`).
    pub store: Store,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("admin server: {0}")]
    Admin(std::io::Error),
}

/// Runs a worker on `backend` until `shutdown` completes, then drains and
/// returns. The backend's delay tiers should be the config's
/// (`delay_tiers`): the worker labels retries by them.
pub async fn run<B: Backend>(
    backend: B,
    opts: WorkerOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), WorkerError> {
    let stop = CancellationToken::new();
    let trigger = stop.clone();
    tokio::spawn(async move {
        shutdown.await;
        trigger.cancel();
    });

    let metrics = WorkerMetrics::new();
    let health = Arc::new(Health::new(metrics.broker_connected.clone()));
    let backend = Arc::new(backend);
    // The delay tiers, `[worker]` and `[store]` are the config's at start
    // (a reload that changes them takes effect at the next start).
    let retention = Retention {
        max_age: opts.config.store.retention,
        max_bytes: opts.config.store.max_size,
    };
    let worker = opts.config.worker.clone();
    let tiers = opts.config.delay_tiers.clone();
    let tier_names: Vec<String> = tiers
        .iter()
        .map(|t| alertpost_seam::topology::tier_name(*t))
        .collect();
    let operational = crate::operational::Operational::new(opts.config.operational.repeat_interval);
    let ctx = Arc::new(Ctx {
        current: Current::new(Runtime::new(opts.config, &metrics, &tier_names, None)?),
        store: opts.store,
        metrics: metrics.clone(),
        tiers,
        operational,
    });
    let admin = match opts.admin {
        Some(listener) => {
            let router = crate::admin::router(
                health.clone(),
                ctx.clone(),
                backend.clone(),
                ctx.current.get().config.admin.token.clone(),
                listener.local_addr().ok(),
            );
            let stop = stop.clone();
            Some(tokio::spawn(crate::admin::serve(
                listener,
                router,
                async move { stop.cancelled().await },
            )))
        }
        None => None,
    };
    // The store takes records until the drain is over, not until the signal:
    // deliveries finished while draining are journaled and recorded too.
    let drained = CancellationToken::new();
    let recorder = {
        let store = ctx.store.clone();
        let drained = drained.clone();
        tokio::spawn(async move { store.run(retention, drained.cancelled_owned()).await })
    };
    // The store's size and dropped records, for `alertpost_store_bytes`
    // and `alertpost_store_records_dropped_total`.
    {
        let (store, metrics, stop) = (ctx.store.clone(), metrics.clone(), stop.clone());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(10));
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = every.tick() => {
                        let dropped = store.dropped();
                        metrics.store_dropped.inc_by(dropped.saturating_sub(metrics.store_dropped.get()));
                        let store = store.clone();
                        let bytes = tokio::task::spawn_blocking(move || store.size_on_disk()).await.unwrap_or(0);
                        metrics.store_bytes.set(i64::try_from(bytes).unwrap_or(i64::MAX));
                    }
                }
            }
        });
    }
    tracing::info!(
        integrations = ctx.current.get().targets.len(),
        broker = %backend.describe(),
        "worker starting"
    );
    if let Some(reload) = opts.reload {
        tokio::spawn(reloads(ctx.clone(), reload, tier_names.clone()));
    }

    let limits = Limits {
        max_inflight: worker.max_inflight,
        drain_timeout: worker.drain_timeout,
    };
    let mut pause = RECONNECT_MIN;
    loop {
        let opened = tokio::select! {
            _ = stop.cancelled() => break,
            opened = backend.open() => opened,
        };
        match opened {
            Ok(session) => {
                pause = RECONNECT_MIN;
                health.set_connected(true);
                tracing::info!("connected to {}; consuming", backend.describe());
                let ended = consume(session, &ctx, &health, &stop, limits).await;
                health.set_connected(false);
                if stop.is_cancelled() {
                    break;
                }
                match ended {
                    Ended::Halted => break,
                    lost => {
                        tracing::warn!(reason = %lost.reason(), "lost the broker connection; reconnecting");
                    }
                }
            }
            Err(e) => {
                health.set_connected(false);
                tracing::warn!(error = %e, retry_in_ms = pause.as_millis() as u64, "cannot start consuming");
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(pause) => {}
                }
                pause = (pause * 2).min(RECONNECT_MAX);
            }
        }
    }

    // The store writes what is queued and flushes.
    drained.cancel();
    let _ = recorder.await;
    tracing::info!("worker stopped");
    if let Some(admin) = admin
        && let Ok(Err(e)) = admin.await
    {
        return Err(WorkerError::Admin(e));
    }
    Ok(())
}

/// Switches to each new configuration as it arrives. One that cannot be
/// made into a runtime (a header the HTTP library refuses) is refused with
/// a log line and the old one stays.
async fn reloads(ctx: Arc<Ctx>, mut configs: mpsc::Receiver<Config>, tiers: Vec<String>) {
    while let Some(config) = configs.recv().await {
        let enabled = config.enabled().count();
        let previous = ctx.current.get();
        match Runtime::new(config, &ctx.metrics, &tiers, Some(&previous)) {
            Ok(runtime) => {
                ctx.current.replace(runtime);
                ctx.metrics.reloads_applied.inc();
                tracing::info!(enabled, "configuration reloaded");
            }
            Err(e) => {
                ctx.metrics.reloads_refused.inc();
                tracing::error!(error = %e, "new configuration refused; keeping the current one")
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Limits {
    max_inflight: usize,
    drain_timeout: Duration,
}

/// One session's worth of consuming; returns why it ended.
async fn consume<S: Session>(
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
    // The bound is at most 10000 (checked at load), within u16.
    let prefetch = u16::try_from(limits.max_inflight).unwrap_or(u16::MAX);
    let streams = async {
        link.session.declare(&runtime.lanes()).await?;
        let events = link.session.consume(&Source::Events, prefetch).await?;
        let deliveries = link.session.consume(&Source::Deliveries, prefetch).await?;
        Ok::<_, BrokerError>((events, deliveries))
    };
    let (events, deliveries) = match streams.await {
        Ok(streams) => streams,
        Err(e) => {
            link.session.close().await;
            return Ended::Broken(e.to_string());
        }
    };
    // Whether the session can publish, into `/readyz` and the gauge.
    let watcher = {
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
    };

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
    let mut a = start(events);
    let mut b = start(deliveries);
    // Operational events go out through this session while it lasts.
    {
        let (ctx, link, halt) = (ctx.clone(), link.clone(), halt.child_token());
        tokio::spawn(async move { ctx.operational.publish(&*link.session, halt).await });
    }
    let mut lanes = Lanes::new(ctx.clone(), link.clone(), halt.child_token());
    lanes.reconcile(&runtime);
    health.set_consuming(true);
    let mut watching = true;
    let (first, rest) = loop {
        tokio::select! {
            r = &mut a => break (r, b),
            r = &mut b => break (r, a),
            changed = configs.changed(), if watching => {
                if changed.is_err() {
                    watching = false;
                    continue;
                }
                let runtime = configs.borrow_and_update().clone();
                // New lanes exist before anything is handed to them; one a
                // hand-off finds missing meanwhile is declared by it.
                if let Err(e) = link.session.declare(&runtime.lanes()).await {
                    tracing::warn!(error = %e, "cannot declare the lanes of the new configuration");
                }
                lanes.reconcile(&runtime);
            }
        }
    };
    halt.cancel();
    let second = rest.await;
    health.set_consuming(false);
    let mut ended = Ended::Halted;
    let mut streams = Vec::new();
    for (i, joined) in [first, second].into_iter().enumerate() {
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
    for s in &streams {
        s.cancel().await;
    }
    // On shutdown, and as well when the connection is lost: deliveries in
    // flight finish (their hand-offs and acks fail with a lost connection,
    // but the journal records what was done, so the messages that come back
    // are not done twice).
    tasks.close();
    let lanes = lanes.stop();
    tracing::info!(in_flight = tasks.len(), "draining");
    let drained = async {
        tasks.wait().await;
        join_all(lanes).await;
    };
    tokio::pin!(drained);
    if tokio::time::timeout(limits.drain_timeout, &mut drained)
        .await
        .is_err()
    {
        tracing::warn!(
            left = tasks.len(),
            "drain timeout reached; unfinished messages go back to the queue"
        );
        lost.cancel();
        drained.await;
    }
    watcher.abort();
    health.set_not_publishing(None);
    ctx.metrics.broker_blocked.set(0);
    link.session.close().await;
    ended
}
