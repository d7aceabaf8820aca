//! A topology prefix of a test's own.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use alertpost_rabbitmq::Broker;
use alertpost_seam::Topology;

/// A unique prefix (`t-<name>-<pid>-<n>-<time>`); the exchange and queues it
/// names are deleted when it is dropped, even after a failed assertion.
/// Lanes depend on the integrations a worker is given: those of the
/// in-process workers are registered when they start, the others with
/// [`TestPrefix::register_lanes`].
pub struct TestPrefix {
    pub prefix: String,
    pub url: String,
    pub topology: Topology,
    lanes: Lanes,
}

/// The lanes to delete with a prefix; shared with the workers that may
/// declare more on a reload.
#[derive(Clone, Default)]
pub struct Lanes(Arc<Mutex<BTreeSet<String>>>);

impl Lanes {
    pub fn register<'a>(&self, ids: impl IntoIterator<Item = &'a str>) {
        let mut lanes = self.0.lock().unwrap_or_else(|p| p.into_inner());
        lanes.extend(ids.into_iter().map(str::to_owned));
    }

    /// Registers the lanes of every integration in `config`.
    pub fn register_config(&self, config: &alertpost_config::Config) {
        self.register(config.integrations.iter().map(|i| i.id.as_str()));
    }

    pub(crate) fn all(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl TestPrefix {
    pub fn new(name: &str) -> TestPrefix {
        TestPrefix::with_tiers(name, &[1, 5])
    }

    /// With these delay tiers, in seconds (short ones keep tests fast and
    /// each tier is a quorum queue to declare).
    pub fn with_tiers(name: &str, tiers: &[u64]) -> TestPrefix {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let prefix = format!("t-{name}-{}-{n}-{nanos:x}", std::process::id());
        let topology = Topology::new(&prefix)
            .expect("test prefixes are valid")
            .with_tiers(tiers.iter().map(|s| Duration::from_secs(*s)).collect())
            .expect("test tiers are valid");
        TestPrefix {
            prefix,
            url: crate::amqp_url(),
            topology,
            lanes: Lanes::default(),
        }
    }

    /// Integrations whose lanes a worker of this prefix may declare: they
    /// are deleted with the rest.
    pub fn register_lanes<'a>(&self, ids: impl IntoIterator<Item = &'a str>) {
        self.lanes.register(ids);
    }

    /// The shared set of lanes to delete, for workers that reload.
    pub fn lanes(&self) -> Lanes {
        self.lanes.clone()
    }

    /// The `delay_tiers` line for a config file using this prefix's tiers.
    pub fn tiers_toml(&self) -> String {
        let names: Vec<String> = self
            .topology
            .tiers()
            .iter()
            .map(|t| format!("\"{}s\"", t.as_secs()))
            .collect();
        format!("delay_tiers = [{}]", names.join(", "))
    }

    /// The broker's host:port, from the URL (for a proxy in front of it).
    pub fn broker_addr(&self) -> std::net::SocketAddr {
        self.url
            .split('@')
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .unwrap_or("127.0.0.1:5672")
            .parse()
            .expect("the test URL names host:port")
    }

    pub async fn broker(&self) -> Broker {
        Broker::connect(&self.url, "alertpost-test", self.topology.clone())
            .await
            .expect("RabbitMQ is reachable (start it with `make rabbitmq`)")
    }

    /// Declares the whole topology, as a worker would.
    pub async fn declare(&self) {
        let broker = self.broker().await;
        broker
            .declare()
            .await
            .expect("the topology can be declared");
        broker.close().await;
    }

    /// Messages ready in a queue of this prefix.
    pub async fn ready(&self, queue: &str) -> u32 {
        let broker = self.broker().await;
        let stats = broker.queue_stats(queue).await.expect("the queue exists");
        broker.close().await;
        stats.messages
    }

    /// A producer on this prefix.
    pub async fn producer(&self) -> alertpost_producer::Producer {
        alertpost_producer::Producer::connect(&self.url, &self.prefix, "test-producer")
            .await
            .expect("RabbitMQ is reachable")
    }

    /// Events ready for a worker: on the events queue, and on the shards
    /// (where those with a `dedup_key` go).
    pub async fn ready_events(&self) -> u32 {
        let mut n = self.ready(&self.topology.events_queue()).await;
        for shard in 0..alertpost_seam::topology::SHARDS {
            n += self.ready(&self.topology.shard_queue(shard)).await;
        }
        n
    }
}

impl Drop for TestPrefix {
    fn drop(&mut self) {
        let url = self.url.clone();
        // A worker run as a binary declares the default tiers, whatever this
        // prefix's own: delete both sets, or quorum queues pile up on the
        // broker run after run.
        let mut tiers = self.topology.tiers().to_vec();
        tiers.extend(alertpost_seam::topology::DEFAULT_TIERS);
        let topology = self
            .topology
            .clone()
            .with_tiers(tiers)
            .unwrap_or_else(|_| self.topology.clone());
        let lanes: Vec<String> = self
            .lanes
            .all()
            .iter()
            .map(|id| self.topology.lane_queue(id))
            .collect();
        // Drop cannot await, and may run inside a runtime: delete from a
        // thread of its own, and wait for it so the test ends clean.
        let cleanup = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(broker) = Broker::connect(&url, "alertpost-test-cleanup", topology).await
                {
                    let _ = broker.delete_queues(&lanes).await;
                    let _ = broker.delete_topology().await;
                    broker.close().await;
                }
            });
        });
        let _ = cleanup.join();
    }
}
