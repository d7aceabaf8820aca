//! The configuration as the worker uses it.

use std::sync::Arc;

use alertpost_config::{Config, Integration};
use alertpost_deliver::Endpoint;
use alertpost_deliver::request::BadHeader;
use alertpost_event::Event;
use tokio::sync::Semaphore;

/// One integration and the permits that bound its concurrency.
#[derive(Debug)]
pub struct Target {
    pub integration: Integration,
    /// The integration's request parts, parsed once.
    pub endpoint: Endpoint,
    /// `integration.concurrency` permits: attempts in flight to it at once.
    /// `None` when that bound is at least the worker's in-flight bound: a
    /// message makes at most one attempt per integration at a time, so the
    /// worker's bound already holds it.
    pub permits: Option<Semaphore>,
}

/// Everything a dispatch needs from the configuration.
#[derive(Debug)]
pub struct Runtime {
    pub config: Config,
    /// Enabled integrations, in file order.
    pub targets: Vec<Arc<Target>>,
}

impl Runtime {
    pub fn new(config: Config) -> Result<Runtime, BadHeader> {
        let bound = config.worker.max_inflight;
        let targets = config
            .enabled()
            .map(|i| {
                Ok(Arc::new(Target {
                    permits: (i.concurrency < bound).then(|| Semaphore::new(i.concurrency)),
                    endpoint: Endpoint::new(i)?,
                    integration: i.clone(),
                }))
            })
            .collect::<Result<_, BadHeader>>()?;
        Ok(Runtime { config, targets })
    }

    /// The integrations an event goes to.
    pub fn targets_for<'a>(
        &'a self,
        _event: &'a Event,
    ) -> impl Iterator<Item = &'a Arc<Target>> + 'a {
        self.targets.iter()
    }

    pub fn target(&self, id: &str) -> Option<&Arc<Target>> {
        self.targets.iter().find(|t| t.integration.id == id)
    }
}
