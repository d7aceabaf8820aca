//! Connects, declares, consumes, reconnects; drains on shutdown.
//!
//! Backpressure is at the source: a permit of the in-flight bound is taken
//! *before* the next message is pulled, moved into the task that handles
//! it, and released when that task ends. Each of the two consumers (events,
//! delivery jobs) has a prefetch equal to the bound, so either queue alone
//! can fill the worker: RabbitMQ holds at most twice the bound unacked for
//! it, and at most the bound are being worked on.
//!
//! Shutdown: stop consuming (cancel), let the tasks in flight finish within
//! the drain timeout (their hand-offs and acks included), then close. What
//! is not finished by then is left unacked and RabbitMQ redelivers it.
//!
//! A lost connection: the session's deliveries in flight finish (their acks
//! fail, the broker redelivers, and the journal keeps what was delivered
//! from being sent twice), bounded by the drain timeout; then the supervisor
//! reconnects with a capped doubling pause.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use alertpost_broker::topology::tier_name;
use alertpost_broker::{Broker, BrokerError, Consumer, Inbound, Publisher, Topology};
use alertpost_config::Config;
use alertpost_metrics::WorkerMetrics;
use alertpost_store::{Retention, Store};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::dispatch::{self, Ctx};
use crate::health::Health;
use crate::runtime::{Current, Runtime, RuntimeError};

/// Pause before the first reconnection attempt; doubles up to the max.
const RECONNECT_MIN: Duration = Duration::from_millis(500);
const RECONNECT_MAX: Duration = Duration::from_secs(30);

/// How a worker runs.
#[derive(Debug)]
pub struct WorkerOptions {
    pub amqp_url: String,
    pub topology: Topology,
    pub config: Config,
    /// Where `/healthz` and `/readyz` are served; none: no admin server.
    pub admin: Option<tokio::net::TcpListener>,
    /// Names the connection in RabbitMQ and prefixes consumer tags.
    pub name: String,
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
    #[error("delay tiers: {0}")]
    Topology(#[from] alertpost_broker::TopologyError),
}

/// Runs a worker until `shutdown` completes, then drains and returns.
pub async fn run(
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
    let admin = match opts.admin {
        Some(listener) => {
            let router = crate::admin::router(health.clone(), opts.store.clone(), metrics.clone());
            let stop = stop.clone();
            Some(tokio::spawn(crate::admin::serve(
                listener,
                router,
                async move { stop.cancelled().await },
            )))
        }
        None => None,
    };

    // The delay tiers are the config's; they apply from start (a reload
    // that changes them takes effect at the next start).
    let topology = opts.topology.with_tiers(opts.config.delay_tiers.clone())?;
    let retention = Retention {
        max_age: opts.config.store.retention,
        max_bytes: opts.config.store.max_size,
    };
    let tier_names: Vec<String> = topology.tiers().iter().map(|t| tier_name(*t)).collect();
    let ctx = Arc::new(Ctx {
        current: Current::new(Runtime::new(opts.config, &metrics, &tier_names, None)?),
        store: opts.store,
        topology: topology.clone(),
        metrics: metrics.clone(),
    });
    // The store takes records until the drain is over, not until the signal:
    // deliveries finished while draining are journaled and recorded too.
    let drained = CancellationToken::new();
    let recorder = {
        let store = ctx.store.clone();
        let drained = drained.clone();
        tokio::spawn(async move { store.run(retention, drained.cancelled_owned()).await })
    };
    // The store's size, for `alertpost_store_bytes`.
    {
        let (store, gauge, stop) = (ctx.store.clone(), metrics.store_bytes.clone(), stop.clone());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(10));
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = every.tick() => {
                        let store = store.clone();
                        let bytes = tokio::task::spawn_blocking(move || store.size_on_disk()).await.unwrap_or(0);
                        gauge.set(i64::try_from(bytes).unwrap_or(i64::MAX));
                    }
                }
            }
        });
    }
    tracing::info!(
        integrations = ctx.current.get().targets.len(),
        prefix = topology.prefix(),
        "worker starting"
    );
    if let Some(reload) = opts.reload {
        tokio::spawn(reloads(ctx.clone(), reload, tier_names.clone()));
    }

    let mut pause = RECONNECT_MIN;
    loop {
        let opened = tokio::select! {
            _ = stop.cancelled() => break,
            opened = Session::open(&opts.amqp_url, &opts.name, &topology, &ctx) => opened,
        };
        match opened {
            Ok(session) => {
                pause = RECONNECT_MIN;
                health.set_connected(true);
                tracing::info!("connected to RabbitMQ; consuming");
                let ended = session.run(&ctx, &health, &stop).await;
                health.set_connected(false);
                match ended {
                    Ended::Shutdown => break,
                    Ended::Lost(reason) => {
                        tracing::warn!(%reason, "lost the RabbitMQ connection; reconnecting");
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
                tracing::info!(enabled, "configuration reloaded");
            }
            Err(e) => {
                tracing::error!(error = %e, "new configuration refused; keeping the current one")
            }
        }
    }
}

/// Spawns the handling of one message, holding its permit until done.
fn spawn(
    tasks: &TaskTracker,
    ctx: &Arc<Ctx>,
    publisher: &Publisher,
    lost: &CancellationToken,
    msg: Inbound,
    permit: Option<OwnedSemaphorePermit>,
) {
    let ctx = ctx.clone();
    let publisher = publisher.clone();
    let lost = lost.clone();
    tasks.spawn(async move {
        tokio::select! {
            _ = dispatch::handle(ctx, publisher, msg) => {}
            _ = lost.cancelled() => {}
        }
        drop(permit);
    });
}

enum Ended {
    Shutdown,
    Lost(String),
}

/// One connection's worth of consuming.
struct Session {
    broker: Broker,
    publisher: Publisher,
    events: Consumer,
    deliveries: Consumer,
    max_inflight: usize,
    drain_timeout: Duration,
}

impl Session {
    async fn open(
        url: &str,
        name: &str,
        topology: &Topology,
        ctx: &Ctx,
    ) -> Result<Session, BrokerError> {
        let runtime = ctx.current.get();
        let worker = &runtime.config.worker;
        let broker = Broker::connect(url, name, topology.clone()).await?;
        broker.declare().await?;
        let publisher = broker.publisher().await?;
        // The bound is at most 10000 (checked at load), within u16.
        let prefetch = u16::try_from(worker.max_inflight).unwrap_or(u16::MAX);
        let events = broker
            .consume(
                &topology.events_queue(),
                prefetch,
                &format!("{name}-events"),
            )
            .await?;
        let deliveries = broker
            .consume(
                &topology.deliveries_queue(),
                prefetch,
                &format!("{name}-deliveries"),
            )
            .await?;
        Ok(Session {
            broker,
            publisher,
            events,
            deliveries,
            max_inflight: worker.max_inflight,
            drain_timeout: worker.drain_timeout,
        })
    }

    async fn run(self, ctx: &Arc<Ctx>, health: &Health, stop: &CancellationToken) -> Ended {
        let Session {
            broker,
            publisher,
            events,
            deliveries,
            max_inflight,
            drain_timeout,
        } = self;
        let bound = Arc::new(Semaphore::new(max_inflight));
        // Tasks are tracked, not joined one by one: a finished task wakes
        // no one, and shutdown waits for all of them at once.
        let tasks = TaskTracker::new();
        // Cancelled when draining runs out of time: the session's tasks stop
        // where they are (their messages are redelivered by the broker).
        let lost = CancellationToken::new();
        // Each consumer pumps in a task of its own, so an idle queue costs
        // nothing; when one pump ends (shutdown, a lost connection), `halt`
        // ends the other.
        let halt = stop.child_token();
        let start = |consumer: Consumer| {
            let pump = Pump {
                bound: bound.clone(),
                tasks: tasks.clone(),
                ctx: ctx.clone(),
                publisher: publisher.clone(),
                lost: lost.clone(),
                halt: halt.clone(),
            };
            tokio::spawn(pump.run(consumer))
        };
        health.set_consuming(true);
        let mut a = start(events);
        let mut b = start(deliveries);
        let (first, rest) = tokio::select! {
            r = &mut a => (r, b),
            r = &mut b => (r, a),
        };
        halt.cancel();
        let second = rest.await;
        health.set_consuming(false);
        tasks.close();
        let mut consumers = Vec::new();
        let mut ended = Ended::Shutdown;
        for (i, joined) in [first, second].into_iter().enumerate() {
            match joined {
                Ok((e, consumer)) => {
                    consumers.push(consumer);
                    if i == 0 {
                        ended = e;
                    }
                }
                Err(e) => ended = Ended::Lost(format!("a consumer task failed: {e}")),
            }
        }
        if stop.is_cancelled() && matches!(ended, Ended::Shutdown) {
            for c in &consumers {
                c.cancel().await;
            }
        }
        // On shutdown, and as well when the connection is lost: deliveries in
        // flight finish (their hand-offs and acks fail with a lost
        // connection, but the journal records what was delivered, so the
        // redelivered messages are not sent twice).
        tracing::info!(in_flight = tasks.len(), "draining");
        if tokio::time::timeout(drain_timeout, tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                left = tasks.len(),
                "drain timeout reached; unfinished messages go back to the queue"
            );
            lost.cancel();
        }
        tasks.wait().await;
        publisher.close().await;
        broker.close().await;
        ended
    }
}

/// Takes messages from one consumer and hands each to a task, under the
/// in-flight bound: a permit first, then the message.
struct Pump {
    bound: Arc<Semaphore>,
    tasks: TaskTracker,
    ctx: Arc<Ctx>,
    publisher: Publisher,
    lost: CancellationToken,
    halt: CancellationToken,
}

impl Pump {
    async fn run(self, mut consumer: Consumer) -> (Ended, Consumer) {
        let ended = loop {
            let permit = tokio::select! {
                biased;
                _ = self.halt.cancelled() => break Ended::Shutdown,
                // The semaphore is never closed.
                p = self.bound.clone().acquire_owned() => p.ok(),
            };
            let next = tokio::select! {
                biased;
                _ = self.halt.cancelled() => break Ended::Shutdown,
                next = consumer.next() => next,
            };
            match next {
                Some(Ok(msg)) => spawn(
                    &self.tasks,
                    &self.ctx,
                    &self.publisher,
                    &self.lost,
                    msg,
                    permit,
                ),
                Some(Err(e)) => break Ended::Lost(e.to_string()),
                None => {
                    break Ended::Lost(format!(
                        "the broker cancelled the consumer of {}",
                        consumer.queue()
                    ));
                }
            }
        };
        (ended, consumer)
    }
}
