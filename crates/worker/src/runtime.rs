//! The configuration as the worker uses it.

use std::sync::Arc;

use alertpost_config::{Config, Integration};
use alertpost_event::Event;
use tokio::sync::Semaphore;

/// One integration and the permits that bound its concurrency.
#[derive(Debug)]
pub struct Target {
    pub integration: Integration,
    /// `integration.concurrency` permits: attempts in flight to it at once.
    pub permits: Semaphore,
}

/// Everything a dispatch needs from the configuration.
#[derive(Debug)]
pub struct Runtime {
    pub config: Config,
    /// Enabled integrations, in file order.
    pub targets: Vec<Arc<Target>>,
}

impl Runtime {
    pub fn new(config: Config) -> Runtime {
        let targets = config
            .enabled()
            .map(|i| {
                Arc::new(Target {
                    permits: Semaphore::new(i.concurrency),
                    integration: i.clone(),
                })
            })
            .collect();
        Runtime { config, targets }
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
