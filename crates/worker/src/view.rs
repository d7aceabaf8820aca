//! What operators may read of a running worker ([`View`]): the runtime in
//! force, readiness, the metrics, each integration's state, and the
//! store's attempts and dead letters. Nothing here changes the worker: the
//! operator surface (`alertpost-admin`) reads through it, and the worker
//! never reads the surface.

use std::sync::Arc;

use alertpost_event::job::DeadLetter;
use alertpost_store::AttemptRecord;

use crate::health::Health;
use crate::operational::Standing;
use crate::runtime::{Ctx, Runtime};

/// A window on one worker. Cheap to clone.
#[derive(Clone)]
pub struct View {
    ctx: Arc<Ctx>,
    health: Arc<Health>,
}

/// Which attempts to read: of one event, of one delivery, or the most
/// recent; of one integration or all; at most `limit` (the last ones).
#[derive(Debug, Clone, Default)]
pub struct AttemptQuery {
    pub event_id: Option<String>,
    pub delivery_id: Option<String>,
    pub integration: Option<String>,
    pub limit: usize,
}

impl View {
    pub(crate) fn new(ctx: Arc<Ctx>, health: Arc<Health>) -> View {
        View { ctx, health }
    }

    /// The runtime in force: the config, the integrations as the worker
    /// delivers to them, the HTTP client. A snapshot: a reload replaces it.
    pub fn runtime(&self) -> Arc<Runtime> {
        self.ctx.current.get()
    }

    /// Connected, consuming, able to publish, and why not.
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// Whether the store's last write succeeded.
    pub fn store_healthy(&self) -> bool {
        self.ctx.store.healthy()
    }

    /// The worker's metrics, in Prometheus' text format.
    pub fn metrics_text(&self) -> String {
        self.ctx.metrics.encode()
    }

    /// Where `integration` stands (active, warning, error) and since when.
    pub fn standing(&self, integration: &str) -> Standing {
        self.ctx.operational.standing(integration)
    }

    /// Attempts from this worker's store, oldest first, as recorded (the
    /// caller masks what operators see). Read on the blocking pool.
    pub async fn attempts(&self, q: AttemptQuery) -> Vec<AttemptRecord> {
        let store = self.ctx.store.clone();
        tokio::task::spawn_blocking(move || match (&q.event_id, &q.delivery_id) {
            (Some(event), None) => store.attempts(Some(event), q.integration.as_deref(), q.limit),
            (_, Some(delivery)) => {
                let mut found = store.attempts_of_delivery(delivery, usize::MAX);
                found.retain(|r| {
                    q.event_id.as_ref().is_none_or(|e| &r.event_id == e)
                        && q.integration.as_ref().is_none_or(|i| &r.integration == i)
                });
                let skip = found.len().saturating_sub(q.limit);
                found.into_iter().skip(skip).collect()
            }
            (None, None) => store.attempts(None, q.integration.as_deref(), q.limit),
        })
        .await
        .unwrap_or_default()
    }

    /// The dead letters this worker produced (its store's copies), newest
    /// first. Read on the blocking pool.
    pub async fn dead_letters(&self, integration: Option<String>, limit: usize) -> Vec<DeadLetter> {
        let store = self.ctx.store.clone();
        tokio::task::spawn_blocking(move || store.dead_letters(integration.as_deref(), limit))
            .await
            .unwrap_or_default()
    }
}
