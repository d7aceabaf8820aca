//! The worker as a whole ([`Worker`]): built from its options, it opens a
//! session with the backend, consumes ([`crate::consume`]), reopens after a
//! failure with a capped doubling pause, and drains on shutdown; beside
//! it, the store's writer, the store's gauges and the reloads.
//!
//! A lost connection: the session's attempts in flight finish and are
//! journaled (their acks fail, the messages come back, and the journal
//! keeps what was done from being done twice), but nothing more is handed
//! on for them (the broker is handing them out again: see
//! [`crate::handoff`]), bounded by the drain timeout; then the supervisor
//! reopens. A lost *publishing* connection does not end the session: the
//! backend reopens it while consumption pauses ([`crate::pump`]).
//!
//! The operator surface (admin API, console) is not here: it reads the
//! worker through its [`View`] (`alertpost-admin`).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use alertpost_config::Config;
use alertpost_metrics::WorkerMetrics;
use alertpost_seam::Backend;
use alertpost_store::{Retention, Store};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::consume::{Limits, consume};
use crate::health::Health;
use crate::operational::Operational;
use crate::pump::Ended;
use crate::runtime::{Ctx, Current, Runtime, RuntimeError};
use crate::view::View;

/// Pause before the first reconnection attempt; doubles up to the max.
const RECONNECT_MIN: Duration = Duration::from_millis(500);
const RECONNECT_MAX: Duration = Duration::from_secs(30);
/// How often the store's size and dropped records are read into metrics.
const STORE_GAUGES_EVERY: Duration = Duration::from_secs(10);

/// How a worker runs (the broker is the [`Backend`] given to [`Worker::new`]).
#[derive(Debug)]
pub struct WorkerOptions {
    pub config: Config,
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
}

/// A worker on its backend, built and not yet running.
pub struct Worker<B> {
    backend: Arc<B>,
    ctx: Arc<Ctx>,
    health: Arc<Health>,
    reload: Option<mpsc::Receiver<Config>>,
    /// The delay tiers' names, for the retry series of reloaded configs.
    tier_names: Vec<String>,
    /// `[worker]` and `[store]` as at start (a reload that changes them
    /// takes effect at the next start).
    limits: Limits,
    retention: Retention,
}

impl<B: Backend> Worker<B> {
    /// Builds the worker's shared state from `opts`, over `backend`: its
    /// runtime (the config's integrations made ready), metrics and
    /// readiness. Fails when the config cannot be made into a runtime (a
    /// header the HTTP library refuses). The backend's delay tiers should be
    /// the config's (`delay_tiers`): the worker labels retries by them.
    pub fn new(backend: B, opts: WorkerOptions) -> Result<Worker<B>, WorkerError> {
        let metrics = WorkerMetrics::new(backend.name());
        let health = Arc::new(Health::new(metrics.broker_connected.clone()));
        let config = opts.config;
        let retention = Retention {
            max_age: config.store.retention,
            max_bytes: config.store.max_size,
        };
        let limits = Limits {
            max_inflight: config.worker.max_inflight,
            drain_timeout: config.worker.drain_timeout,
        };
        let tiers = config.delay_tiers.clone();
        let tier_names: Vec<String> = tiers
            .iter()
            .map(|t| alertpost_seam::topology::tier_name(*t))
            .collect();
        let operational = Operational::new(config.operational.repeat_interval);
        let ctx = Arc::new(Ctx {
            current: Current::new(Runtime::new(config, &metrics, &tier_names, None)?),
            store: opts.store,
            metrics,
            tiers,
            operational,
            keys: crate::order::Keys::default(),
        });
        Ok(Worker {
            backend: Arc::new(backend),
            ctx,
            health,
            reload: opts.reload,
            tier_names,
            limits,
            retention,
        })
    }

    /// What operators may read of this worker while it runs.
    pub fn view(&self) -> View {
        View::new(self.ctx.clone(), self.health.clone())
    }

    /// Its backend (the operator surface reads the dead queue through it).
    pub fn backend(&self) -> Arc<B> {
        self.backend.clone()
    }

    /// Runs until `shutdown` completes, then drains and returns.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), WorkerError> {
        let Worker {
            backend,
            ctx,
            health,
            reload,
            tier_names,
            limits,
            retention,
        } = self;
        let stop = CancellationToken::new();
        let trigger = stop.clone();
        tokio::spawn(async move {
            shutdown.await;
            trigger.cancel();
        });
        // The store takes records until the drain is over, not until the
        // signal: deliveries finished while draining are journaled and
        // recorded too.
        let drained = CancellationToken::new();
        let recorder = {
            let store = ctx.store.clone();
            let drained = drained.clone();
            tokio::spawn(async move { store.run(retention, drained.cancelled_owned()).await })
        };
        tokio::spawn(store_gauges(ctx.clone(), stop.clone()));
        tracing::info!(
            integrations = ctx.current.get().targets.len(),
            broker = %backend.describe(),
            "worker starting"
        );
        if let Some(reload) = reload {
            tokio::spawn(reloads(ctx.clone(), reload, tier_names));
        }
        reconnecting(&*backend, &ctx, &health, &stop, limits).await;
        // The store writes what is queued and flushes.
        drained.cancel();
        let _ = recorder.await;
        tracing::info!("worker stopped");
        Ok(())
    }
}

/// Sessions one after another until `stop`: each consumed until it ends,
/// the next opened after a pause that doubles while opening fails.
async fn reconnecting<B: Backend>(
    backend: &B,
    ctx: &Arc<Ctx>,
    health: &Arc<Health>,
    stop: &CancellationToken,
    limits: Limits,
) {
    let mut pause = RECONNECT_MIN;
    loop {
        let opened = tokio::select! {
            _ = stop.cancelled() => return,
            opened = backend.open() => opened,
        };
        match opened {
            Ok(session) => {
                pause = RECONNECT_MIN;
                health.set_connected(true);
                tracing::info!("connected to {}; consuming", backend.describe());
                let ended = consume(session, ctx, health, stop, limits).await;
                health.set_connected(false);
                if stop.is_cancelled() {
                    return;
                }
                match ended {
                    Ended::Halted => return,
                    lost => {
                        tracing::warn!(reason = %lost.reason(), "lost the broker connection; reconnecting");
                    }
                }
            }
            Err(e) => {
                health.set_connected(false);
                tracing::warn!(error = %e, retry_in_ms = pause.as_millis() as u64, "cannot start consuming");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(pause) => {}
                }
                pause = (pause * 2).min(RECONNECT_MAX);
            }
        }
    }
}

/// The store's size and dropped records, for `alertpost_store_bytes` and
/// `alertpost_store_records_dropped_total`, until `stop`.
async fn store_gauges(ctx: Arc<Ctx>, stop: CancellationToken) {
    let (store, metrics) = (&ctx.store, &ctx.metrics);
    let mut every = tokio::time::interval(STORE_GAUGES_EVERY);
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
