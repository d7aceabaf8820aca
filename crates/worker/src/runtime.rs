//! The configuration as the worker uses it. A reload builds a new
//! [`Runtime`] and swaps it in; a message keeps the one it started with, so
//! in-flight deliveries finish under the config they began under. An
//! integration's circuit and concurrency permits carry over a reload when
//! the settings they depend on are unchanged: a reload neither closes an
//! open circuit nor lets old and new messages each use the full bound.

use std::num::NonZeroU32;
use std::sync::Arc;

use alertpost_config::{Config, Integration, RateLimit};
use alertpost_deliver::Client;
use alertpost_deliver::Endpoint;
use alertpost_event::{Event, Status};
use alertpost_metrics::{IntegrationMetrics, Outcome, WorkerMetrics};
use alertpost_store::Store;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::circuit::Circuit;

/// What every task of a worker shares, across sessions.
#[derive(Debug)]
pub struct Ctx {
    /// The configuration in force; a message takes a snapshot.
    pub current: Current,
    pub store: Store,
    pub metrics: WorkerMetrics,
    /// The delay tiers (from start), for the `tier` label of retries; the
    /// backend places a wait by the same rule.
    pub tiers: Vec<std::time::Duration>,
    /// Integration states and the operational events they raise.
    pub operational: crate::operational::Operational,
}

/// One integration, ready to deliver to.
#[derive(Debug)]
pub struct Target {
    pub integration: Integration,
    /// The integration's request parts, parsed once.
    pub endpoint: Endpoint,
    /// `integration.concurrency` permits: attempts in flight to it at once,
    /// whether they come from events, delivery jobs or its lane. Tokio's
    /// semaphore is fair: while a lane's delivery waits for a permit, a
    /// new delivery cannot take one ahead of it, so the backlog keeps its
    /// order.
    pub permits: Arc<Semaphore>,
    /// Its series, resolved once.
    pub metrics: IntegrationMetrics,
    pub circuit: Arc<Circuit>,
    /// Its `rate_limit`, a token bucket; kept over a reload that leaves
    /// the limit as it was.
    pub bucket: Option<Arc<Bucket>>,
    /// Lane deliveries waiting for a token: while any do, a new delivery
    /// does not take one ahead of them (the bucket itself is not fair).
    pub bucket_waiters: Arc<std::sync::atomic::AtomicUsize>,
    /// Its last success and failure, kept over a reload that leaves its
    /// URL as it was.
    pub seen: Arc<crate::status::Seen>,
    /// What to mask in what its receiver answers
    /// ([`Integration::secret_values`]).
    pub secrets: Vec<String>,
}

/// A token bucket of one integration (GCRA, from `governor`).
pub type Bucket = governor::DefaultDirectRateLimiter;

/// A bucket for `limit`: `count` requests per `per`, in bursts of up to
/// `count`.
fn bucket(limit: RateLimit) -> Option<Arc<Bucket>> {
    let burst = NonZeroU32::new(limit.count)?;
    let quota = governor::Quota::with_period(limit.per / limit.count)?.allow_burst(burst);
    Some(Arc::new(governor::RateLimiter::direct(quota)))
}

/// Everything a dispatch needs from the configuration.
#[derive(Debug)]
pub struct Runtime {
    pub config: Config,
    /// The HTTP client, built for the config's outbound policy.
    pub client: Client,
    /// Enabled integrations, in file order.
    pub targets: Vec<Arc<Target>>,
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Endpoint(#[from] alertpost_deliver::request::EndpointError),
    #[error(transparent)]
    Client(#[from] alertpost_deliver::client::ClientError),
}

impl Runtime {
    /// `tiers` names the delay tiers, for the retry series; `previous` is
    /// the runtime being replaced, whose state carries over where it can.
    pub fn new(
        config: Config,
        metrics: &WorkerMetrics,
        tiers: &[String],
        previous: Option<&Runtime>,
    ) -> Result<Runtime, RuntimeError> {
        let client = Client::new(config.policy.clone())?;
        let targets = config
            .enabled()
            .map(|i| {
                let before = previous.and_then(|p| p.target(&i.id));
                let series = metrics.integration(&i.id, tiers);
                let circuit = match before {
                    Some(b)
                        if b.integration.url == i.url
                            && b.integration.circuit == i.circuit
                            && b.integration.timeout == i.timeout =>
                    {
                        b.circuit.clone()
                    }
                    _ => {
                        series.circuit_open.set(0);
                        // An attempt is at most two token fetches and two
                        // requests, each bounded by the timeout.
                        Arc::new(Circuit::new(i.circuit, i.timeout.saturating_mul(4)))
                    }
                };
                let permits = match before {
                    Some(b) if b.integration.concurrency == i.concurrency => b.permits.clone(),
                    _ => Arc::new(Semaphore::new(i.concurrency)),
                };
                let (bucket, bucket_waiters) = match before {
                    Some(b) if b.integration.rate_limit == i.rate_limit => {
                        (b.bucket.clone(), b.bucket_waiters.clone())
                    }
                    _ => (i.rate_limit.and_then(bucket), Arc::default()),
                };
                let seen = match before {
                    Some(b) if b.integration.url == i.url => b.seen.clone(),
                    _ => Arc::default(),
                };
                Ok(Arc::new(Target {
                    metrics: series,
                    seen,
                    secrets: i.secret_values(),
                    circuit,
                    permits,
                    bucket,
                    bucket_waiters,
                    endpoint: Endpoint::new(i, &client)?,
                    integration: i.clone(),
                }))
            })
            .collect::<Result<Vec<_>, RuntimeError>>()?;
        // A removed or disabled integration's circuit is no longer open.
        for gone in previous
            .iter()
            .flat_map(|p| &p.targets)
            .filter(|t| !targets.iter().any(|n| n.integration.id == t.integration.id))
        {
            gone.metrics.circuit_open.set(0);
        }
        Ok(Runtime {
            client,
            config,
            targets,
        })
    }

    /// The integrations an event goes to: enabled, they take its kind
    /// (`kinds`) and its status (`send_resolved`), and their filter holds.
    /// Those that take its kind but not the event count it as `filtered`;
    /// another kind is not theirs to count (operational events would add
    /// to every integration's count).
    pub fn targets_for(&self, event: &Event) -> Vec<&Arc<Target>> {
        self.targets
            .iter()
            .filter(|t| {
                let i = &t.integration;
                if !i.kinds.admits(&event.kind) {
                    return false;
                }
                let matches = (i.send_resolved || event.status != Status::Resolved)
                    && i.filter.matches(event);
                if !matches {
                    t.metrics.outcome(Outcome::Filtered);
                }
                matches
            })
            .collect()
    }

    pub fn target(&self, id: &str) -> Option<&Arc<Target>> {
        self.targets.iter().find(|t| t.integration.id == id)
    }

    /// Every integration of the config, enabled or not, has a lane: a
    /// disabled one's lane is drained into the dead queue.
    pub fn lanes(&self) -> Vec<String> {
        self.config
            .integrations
            .iter()
            .map(|i| i.id.clone())
            .collect()
    }
}

impl Target {
    /// A permit if one is free now, and no lane delivery waits for one.
    pub fn try_permit(&self) -> Option<OwnedSemaphorePermit> {
        self.permits.clone().try_acquire_owned().ok()
    }

    /// A permit, in turn. `None` only if the semaphore were closed, which
    /// it never is; sending without the bound then beats losing the delivery.
    pub async fn permit(&self) -> Option<OwnedSemaphorePermit> {
        self.permits.clone().acquire_owned().await.ok()
    }
}

/// The current runtime, replaced whole on reload; the supervisor watches it
/// to keep one lane consumer per integration.
#[derive(Debug)]
pub struct Current(watch::Sender<Arc<Runtime>>);

impl Current {
    pub fn new(runtime: Runtime) -> Current {
        Current(watch::Sender::new(Arc::new(runtime)))
    }

    /// A snapshot: what one message is handled with, start to end.
    pub fn get(&self) -> Arc<Runtime> {
        self.0.borrow().clone()
    }

    pub fn replace(&self, runtime: Runtime) {
        self.0.send_replace(Arc::new(runtime));
    }

    /// Sees every replacement from now on.
    pub fn watch(&self) -> watch::Receiver<Arc<Runtime>> {
        self.0.subscribe()
    }
}
