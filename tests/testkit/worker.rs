//! A worker running in the test's process, over either backend: the shared
//! suites run each test on both ([`Backend`], with rstest's `#[case]`s).

use std::net::SocketAddr;
use std::time::Duration;

use alertpost_embedded::{Embedded, EmbeddedProducer};
use alertpost_event::Event;
use alertpost_producer::{Producer, Publish};
use alertpost_seam::{Inbound, Reader, Session, Source};
use alertpost_store::queue::DurableQueue;
use alertpost_worker::{Worker, WorkerError, WorkerOptions};
use tokio::sync::{mpsc, oneshot};

use crate::TestPrefix;

/// Which backend a test's worker runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The local RabbitMQ, with the test's prefix.
    RabbitMq,
    /// The embedded durable queue (`alertpost run`'s), in a temporary
    /// directory of the worker's own.
    Embedded,
}

/// The sled cache of a test's embedded queue (small: tests hold little).
const QUEUE_CACHE_BYTES: u64 = 8 * 1024 * 1024;

/// Where a test's events go in: the producer library, or the embedded
/// queue's producer (what `alertpost run`'s ingest uses).
enum Feed {
    Rabbit(Producer),
    Embedded {
        producer: EmbeddedProducer,
        backend: Embedded,
        queue: DurableQueue,
        _dir: tempfile::TempDir,
    },
}

pub struct RunningWorker {
    stop: Option<oneshot::Sender<()>>,
    /// The worker's store directory (removed when the worker is dropped).
    pub data: tempfile::TempDir,
    pub store: alertpost_store::Store,
    reload: mpsc::Sender<alertpost_config::Config>,
    lanes: crate::prefix::Lanes,
    handle: Option<tokio::task::JoinHandle<Result<(), WorkerError>>>,
    pub admin: SocketAddr,
    pub backend: Backend,
    feed: Feed,
    /// The worker's topology (its delay tiers are the config's).
    topology: alertpost_seam::Topology,
}

/// A worker and its admin server, as `alertpost worker` runs them, until
/// `stop` fires (or its sender is dropped).
async fn run_with_admin<B: alertpost_seam::Backend>(
    backend: B,
    options: WorkerOptions,
    admin: tokio::net::TcpListener,
    stop: oneshot::Receiver<()>,
) -> Result<(), WorkerError> {
    let worker = Worker::new(backend, options)?;
    let (stopped, until) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let _ = stop.await;
        let _ = stopped.send(true);
    });
    let until = move || {
        let mut until = until.clone();
        async move {
            let _ = until.wait_for(|s| *s).await;
        }
    };
    let served = tokio::spawn(alertpost_admin::serve(
        admin,
        worker.view(),
        worker.backend(),
        until(),
    ));
    let ran = worker.run(until()).await;
    let _ = served.await;
    ran
}

impl RunningWorker {
    /// Starts a worker for `prefix` with the config in `toml`, and waits
    /// until it is consuming (its `/readyz` says so).
    pub async fn start(prefix: &TestPrefix, toml: &str) -> RunningWorker {
        RunningWorker::start_on(Backend::RabbitMq, prefix, toml).await
    }

    /// [`RunningWorker::start`] on `backend`.
    pub async fn start_on(backend: Backend, prefix: &TestPrefix, toml: &str) -> RunningWorker {
        let worker = RunningWorker::spawn_on(backend, prefix, &prefix.url, toml).await;
        worker.wait_ready(Duration::from_secs(20)).await;
        worker
    }

    /// Starts a worker connecting to `amqp_url` (a proxy, say), without
    /// waiting for it to be ready.
    pub async fn spawn(prefix: &TestPrefix, amqp_url: &str, toml: &str) -> RunningWorker {
        RunningWorker::spawn_on(Backend::RabbitMq, prefix, amqp_url, toml).await
    }

    async fn spawn_on(
        kind: Backend,
        prefix: &TestPrefix,
        amqp_url: &str,
        toml: &str,
    ) -> RunningWorker {
        // The worker's delay tiers are the prefix's unless the test sets its
        // own (a top-level key: it goes before any table).
        let toml = if toml.contains("delay_tiers") {
            toml.to_owned()
        } else {
            format!("{}\n{toml}", prefix.tiers_toml())
        };
        let toml = toml.as_str();
        let config = alertpost_config::parse(toml, "test.toml", &|name| std::env::var(name).ok())
            .unwrap_or_else(|e| panic!("{e}"));
        let lanes = prefix.lanes();
        lanes.register_config(&config);
        let admin = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("admin can listen");
        let admin_addr = admin.local_addr().expect("bound");
        let (tx, rx) = oneshot::channel::<()>();
        let (reload, configs) = mpsc::channel(1);
        let data = tempfile::tempdir().expect("a temporary directory");
        let store = alertpost_store::Store::open(data.path()).expect("a fresh store opens");
        let topology = prefix
            .topology
            .clone()
            .with_tiers(config.delay_tiers.clone())
            .expect("the config's tiers are valid");
        let options = WorkerOptions {
            config,
            reload: Some(configs),
            store: store.clone(),
        };
        let worker_topology = topology.clone();
        let (handle, feed) = match kind {
            Backend::RabbitMq => {
                let backend = alertpost_rabbitmq::Rabbit::new(
                    amqp_url,
                    &format!("{}-worker", prefix.prefix),
                    topology.clone(),
                );
                // Connects in the background: some tests start a worker
                // while the broker is away.
                let producer =
                    Producer::lazy(&prefix.url, prefix.topology.clone(), "test-producer");
                (
                    tokio::spawn(run_with_admin(backend, options, admin, rx)),
                    Feed::Rabbit(producer),
                )
            }
            Backend::Embedded => {
                let dir = tempfile::tempdir().expect("a temporary directory");
                let queue = DurableQueue::open(
                    dir.path(),
                    &topology.dead_queue(),
                    topology.delivery_limit(),
                    QUEUE_CACHE_BYTES,
                )
                .expect("the embedded queue opens");
                let backend = Embedded::new(queue.clone(), topology);
                (
                    tokio::spawn(run_with_admin(backend.clone(), options, admin, rx)),
                    Feed::Embedded {
                        producer: EmbeddedProducer::new(backend.clone()),
                        backend,
                        queue,
                        _dir: dir,
                    },
                )
            }
        };
        RunningWorker {
            stop: Some(tx),
            data,
            store,
            reload,
            lanes,
            handle: Some(handle),
            admin: admin_addr,
            backend: kind,
            feed,
            topology: worker_topology,
        }
    }

    /// Publishes `events` into this worker's backend, as a producer does
    /// (confirmed, or on disk); returns them as published (ids set).
    pub async fn publish_all(&self, events: Vec<Event>) -> Vec<Event> {
        match &self.feed {
            Feed::Rabbit(p) => p.publish_all(events).await,
            Feed::Embedded { producer, .. } => producer.publish_all(events).await,
        }
        .expect("the events are published")
    }

    pub async fn publish(&self, event: Event) -> Event {
        let mut all = self.publish_all(vec![event]).await;
        all.pop().expect("one event published")
    }

    /// Raw bytes into the events stream (what no producer would publish).
    pub async fn publish_raw(&self, prefix: &TestPrefix, msg: &alertpost_seam::Outgoing<'_>) {
        let to = alertpost_seam::Destination::Events {
            routing_key: "test".to_owned(),
        };
        match &self.feed {
            Feed::Rabbit(_) => {
                let broker = prefix.broker().await;
                let publisher = broker.publisher().await.expect("a publisher");
                publisher.publish(&to, msg).await.expect("published");
                publisher.close().await;
                broker.close().await;
            }
            Feed::Embedded { backend, .. } => {
                backend.publish(&to, msg).await.expect("stored");
            }
        }
    }

    /// Messages in the dead queue now (left in place).
    pub async fn dead_count(&self, prefix: &TestPrefix) -> usize {
        match &self.feed {
            Feed::Rabbit(_) => prefix.ready(&prefix.topology.dead_queue()).await as usize,
            Feed::Embedded { queue, .. } => queue.ready_len(&prefix.topology.dead_queue()),
        }
    }

    /// Takes every dead message off the dead queue (acked: removed).
    pub async fn take_dead(&self, prefix: &TestPrefix) -> Vec<Inbound> {
        async fn drain<R: Reader>(mut reader: R) -> Vec<Inbound> {
            let mut out = Vec::new();
            while let Some(msg) = reader.next().await.expect("the dead queue reads") {
                msg.ack().await.expect("acked");
                out.push(msg);
            }
            reader.close().await;
            out
        }
        match &self.feed {
            Feed::Rabbit(_) => {
                let broker = prefix.broker().await;
                let reader = broker.reader(&Source::Dead).await.expect("a reader");
                let out = drain(reader).await;
                broker.close().await;
                out
            }
            Feed::Embedded { backend, .. } => {
                drain(backend.reader(&Source::Dead).await.expect("a reader")).await
            }
        }
    }

    /// Messages ready in every queue but the dead one (the events, the
    /// deliveries, the worker's delay tiers, the lanes of its integrations):
    /// 0 when nothing waits (embedded: waits not yet due count too).
    pub async fn waiting(&self, prefix: &TestPrefix) -> usize {
        let lanes: Vec<String> = self
            .lanes
            .all()
            .iter()
            .map(|id| self.topology.lane_queue(id))
            .collect();
        match &self.feed {
            Feed::Rabbit(_) => {
                let broker = prefix.broker().await;
                let mut n = 0;
                for queue in self.topology.queues().into_iter().chain(lanes) {
                    // A lane never declared (a disabled integration's)
                    // holds nothing.
                    if queue != self.topology.dead_queue() {
                        n += broker.queue_stats(&queue).await.map_or(0, |s| s.messages) as usize;
                    }
                }
                broker.close().await;
                n
            }
            Feed::Embedded { queue, .. } => {
                let names = [
                    self.topology.events_queue(),
                    self.topology.deliveries_queue(),
                ];
                names
                    .iter()
                    .chain(&lanes)
                    .map(|q| queue.ready_len(q))
                    .sum::<usize>()
                    + queue.later_len()
            }
        }
    }

    /// Polls `/readyz` until it answers 200.
    pub async fn wait_ready(&self, timeout: Duration) {
        self.wait_readyz(200, timeout).await;
    }

    /// Polls `/readyz` until it answers `status`.
    pub async fn wait_readyz(&self, status: u16, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let got = crate::bin::http_get(self.admin, "/readyz").await;
            if got.map(|(s, _)| s) == Some(status) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "/readyz did not answer {status} within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Hands the worker a new configuration, as SIGHUP does.
    pub async fn reload(&self, toml: &str) {
        let config = alertpost_config::parse(toml, "reload.toml", &|name| std::env::var(name).ok())
            .unwrap_or_else(|e| panic!("{e}"));
        self.lanes.register_config(&config);
        self.reload
            .send(config)
            .await
            .expect("the worker takes reloads");
    }

    /// Graceful stop: drain, then return the worker's result. The backend
    /// stays open for the test to look at ([`RunningWorker::waiting`]...).
    pub async fn stop(&mut self) -> Result<(), WorkerError> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match self.handle.take() {
            Some(handle) => handle.await.expect("the worker task does not panic"),
            None => Ok(()),
        }
    }
}

impl Drop for RunningWorker {
    fn drop(&mut self) {
        if let Some(handle) = &self.handle {
            handle.abort();
        }
    }
}
