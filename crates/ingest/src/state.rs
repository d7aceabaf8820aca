//! What every request shares.

use std::sync::Arc;
use std::time::Duration;

use alertpost_config::Secret;
use alertpost_metrics::IngestMetrics;

/// What every request shares.
#[derive(Clone)]
pub(crate) struct Ingest<P> {
    pub(crate) producer: P,
    pub(crate) metrics: IngestMetrics,
    pub(crate) tokens: Arc<Vec<Secret>>,
    /// One permit per request in progress.
    pub(crate) slots: Arc<tokio::sync::Semaphore>,
    pub(crate) max_concurrent: usize,
    pub(crate) body_timeout: Duration,
}
