//! The configuration as the worker uses it. A reload builds a new
//! [`Runtime`] and swaps it in; a message keeps the one it started with, so
//! in-flight deliveries finish under the config they began under. An
//! integration's circuit and concurrency permits carry over a reload when
//! the settings they depend on are unchanged: a reload neither closes an
//! open circuit nor lets old and new messages each use the full bound.

use std::sync::Arc;

use alertpost_config::Config;
use alertpost_deliver::Client;
use alertpost_metrics::WorkerMetrics;
use alertpost_store::Store;
use tokio::sync::watch;

use crate::target::Target;

/// What every task of a worker shares, across sessions.
#[derive(Debug)]
pub(crate) struct Ctx {
    /// The configuration in force; a message takes a snapshot.
    pub current: Current,
    pub store: Store,
    pub metrics: WorkerMetrics,
    /// The delay tiers (from start), for the `tier` label of retries; the
    /// backend places a wait by the same rule.
    pub tiers: Vec<std::time::Duration>,
    /// Integration states and the operational events they raise.
    pub operational: crate::operational::Operational,
    /// Each alert's order at each integration ([`crate::order`]).
    pub keys: crate::order::Keys,
}

/// Everything a dispatch needs from the configuration.
#[derive(Debug)]
pub struct Runtime {
    pub config: Config,
    /// The HTTP client, built for the config's outbound policy.
    pub client: Client,
    /// Enabled integrations, in file order.
    pub(crate) targets: Vec<Arc<Target>>,
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
    pub(crate) fn new(
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
                Ok(Arc::new(Target::new(i, before, series, &client)?))
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

    pub(crate) fn target(&self, id: &str) -> Option<&Arc<Target>> {
        self.targets.iter().find(|t| t.integration.id == id)
    }

    /// Every integration of the config, enabled or not, has a lane: a
    /// disabled one's lane is drained into the dead queue.
    pub(crate) fn lanes(&self) -> Vec<String> {
        self.config
            .integrations
            .iter()
            .map(|i| i.id.clone())
            .collect()
    }
}

/// The current runtime, replaced whole on reload; the supervisor watches it
/// to keep one lane consumer per integration.
#[derive(Debug)]
pub(crate) struct Current(watch::Sender<Arc<Runtime>>);

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
