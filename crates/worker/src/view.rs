//! What operators may read of a running worker ([`View`]): the runtime in
//! force, readiness, the metrics, each integration's state, and the
//! store's attempts and dead letters. Nothing here changes the worker: the
//! operator surface (`alertpost-admin`) reads through it, and the worker
//! never reads the surface.

use std::sync::Arc;

use alertpost_event::job::DeadLetter;
use alertpost_metrics::Outcome;
use alertpost_store::AttemptRecord;
use time::OffsetDateTime;

use crate::health::Health;
use crate::operational::Standing;
use crate::runtime::{Ctx, Runtime};

/// A window on one worker. Cheap to clone.
#[derive(Clone)]
pub struct View {
    ctx: Arc<Ctx>,
    health: Arc<Health>,
}

/// One enabled integration as the worker sees it now: its state, its
/// circuit, this worker's counts since it started, its last success and
/// failure.
#[derive(Debug, Clone)]
pub struct IntegrationState {
    pub standing: Standing,
    /// `closed`, `open`, `probing`, or `off` (no circuit).
    pub circuit: &'static str,
    pub delivered: u64,
    pub retried: u64,
    /// Handed to its lane (at its concurrency or rate limit, or its
    /// circuit open).
    pub deferred: u64,
    pub dead: u64,
    /// Attempts in flight now.
    pub in_flight: i64,
    pub last_success: Option<OffsetDateTime>,
    /// When, and the reason (as recorded: its secrets are masked by the
    /// reader).
    pub last_failure: Option<(OffsetDateTime, String)>,
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

    /// The runtime in force: the config and the HTTP client (for test
    /// deliveries). A snapshot: a reload replaces it.
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

    /// Where enabled integration `id` stands; `None` when it is not one of
    /// the runtime's (disabled, or not in the config).
    pub fn integration(&self, id: &str) -> Option<IntegrationState> {
        let runtime = self.ctx.current.get();
        let target = runtime.target(id)?;
        let m = &target.metrics;
        Some(IntegrationState {
            standing: self.ctx.operational.standing(id),
            circuit: target.circuit.label(),
            delivered: m.count(Outcome::Delivered),
            retried: m.count(Outcome::Retried),
            deferred: m.count(Outcome::Deferred),
            dead: m.count(Outcome::Dead),
            in_flight: m.inflight.get(),
            last_success: target.seen.last_success(),
            last_failure: target.seen.last_failure(),
        })
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
