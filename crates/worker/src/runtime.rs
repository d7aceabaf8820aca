//! The configuration as the worker uses it. A reload builds a new
//! [`Runtime`] and swaps it in; a message keeps the one it started with, so
//! in-flight deliveries finish under the config they began under. An
//! integration's circuit and concurrency permits carry over a reload when
//! the settings they depend on are unchanged: a reload neither closes an
//! open circuit nor lets old and new messages each use the full bound.

use std::sync::{Arc, RwLock};

use alertpost_config::{Config, Integration};
use alertpost_deliver::Client;
use alertpost_deliver::Endpoint;
use alertpost_event::Event;
use alertpost_metrics::{IntegrationMetrics, WorkerMetrics};
use tokio::sync::Semaphore;

use crate::circuit::Circuit;

/// One integration, ready to deliver to.
#[derive(Debug)]
pub struct Target {
    pub integration: Integration,
    /// The integration's request parts, parsed once.
    pub endpoint: Endpoint,
    /// `integration.concurrency` permits: attempts in flight to it at once.
    /// `None` when that bound is at least the worker's in-flight bound: a
    /// message makes at most one attempt per integration at a time, so the
    /// worker's bound already holds it.
    pub permits: Option<Arc<Semaphore>>,
    /// Its series, resolved once.
    pub metrics: IntegrationMetrics,
    pub circuit: Arc<Circuit>,
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
    Header(#[from] alertpost_deliver::request::BadHeader),
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
        let bound = config.worker.max_inflight;
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
                let permits = match before.and_then(|b| b.permits.as_ref().map(|p| (b, p))) {
                    Some((b, p)) if b.integration.concurrency == i.concurrency => Some(p.clone()),
                    _ => (i.concurrency < bound).then(|| Arc::new(Semaphore::new(i.concurrency))),
                };
                Ok(Arc::new(Target {
                    metrics: series,
                    circuit,
                    permits,
                    endpoint: Endpoint::new(i)?,
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
            client: Client::new(config.policy.clone())?,
            config,
            targets,
        })
    }

    /// The integrations an event goes to: enabled, and their filter holds.
    /// The others count it as `filtered`.
    pub fn targets_for(&self, event: &Event) -> Vec<&Arc<Target>> {
        self.targets
            .iter()
            .filter(|t| {
                let matches = t.integration.filter.matches(event);
                if !matches {
                    t.metrics.outcome("filtered");
                }
                matches
            })
            .collect()
    }

    pub fn target(&self, id: &str) -> Option<&Arc<Target>> {
        self.targets.iter().find(|t| t.integration.id == id)
    }
}

/// The current runtime, replaced whole on reload.
#[derive(Debug)]
pub struct Current(RwLock<Arc<Runtime>>);

impl Current {
    pub fn new(runtime: Runtime) -> Current {
        Current(RwLock::new(Arc::new(runtime)))
    }

    /// A snapshot: what one message is handled with, start to end.
    pub fn get(&self) -> Arc<Runtime> {
        // A poisoned lock still holds a complete runtime (the swap is one
        // assignment); keep serving it.
        match self.0.read() {
            Ok(r) => r.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn replace(&self, runtime: Runtime) {
        let runtime = Arc::new(runtime);
        match self.0.write() {
            Ok(mut r) => *r = runtime,
            Err(poisoned) => *poisoned.into_inner() = runtime,
        }
    }
}
