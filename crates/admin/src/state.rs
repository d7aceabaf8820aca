//! What every route and page of the admin surface shares ([`Admin`]: the
//! worker's view, the backend whose dead queue it reads, whether a token
//! is needed), and the reads both the API and the console make: attempts,
//! the dead queue's rows and letters, each with its integration's secrets
//! masked.

use std::future::Future;
use std::sync::Arc;

use alertpost_seam::{Backend, BrokerError};
use alertpost_store::AttemptRecord;
use alertpost_worker::{AttemptQuery, View};
use serde::Deserialize;

use crate::deadletters;

/// Records returned when the query names no limit, and the most it may ask.
pub(crate) const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;

pub(crate) struct Admin<B> {
    /// The worker, read-only: its runtime, readiness, metrics, states and
    /// store.
    pub(crate) view: View,
    pub(crate) backend: Arc<B>,
    /// Whether `[admin] token` is set (the console asks for it).
    pub(crate) token_required: bool,
}

// Derived `Clone` would ask `B: Clone`; only the `Arc`s are cloned.
impl<B> Clone for Admin<B> {
    fn clone(&self) -> Admin<B> {
        Admin {
            view: self.view.clone(),
            backend: self.backend.clone(),
            token_required: self.token_required,
        }
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AttemptsQuery {
    /// Attempts of this event.
    pub(crate) event_id: Option<String>,
    /// Attempts of this delivery (searched among the recent ones).
    pub(crate) delivery_id: Option<String>,
    pub(crate) integration: Option<String>,
    pub(crate) limit: Option<usize>,
}

/// What `q` asks of the worker's store, with the integrations' secrets
/// masked in what receivers answered (a receiver can echo a token).
pub(crate) async fn find_attempts(view: &View, q: AttemptsQuery) -> Vec<AttemptRecord> {
    let mut found = view
        .attempts(AttemptQuery {
            event_id: q.event_id,
            delivery_id: q.delivery_id,
            integration: q.integration,
            limit: q.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT),
        })
        .await;
    let runtime = view.runtime();
    for r in &mut found {
        crate::masking::record(&runtime.config, r);
    }
    found
}

/// Runs `work` in a task of its own: a caller that hangs up mid-request
/// neither cuts a replay short nor leaves what it took out of the dead
/// queue held by a session nobody closes. The error says what failed.
pub(crate) async fn detached<T: Send + 'static>(
    work: impl Future<Output = Result<T, BrokerError>> + Send + 'static,
) -> Result<T, String> {
    match tokio::spawn(work).await {
        Ok(Ok(out)) => Ok(out),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(format!("the dead-queue task failed: {e}")),
    }
}

/// The dead queue's rows (of one integration), oldest first, their
/// integrations' secrets masked.
pub(crate) async fn dead_rows<B: Backend>(
    admin: &Admin<B>,
    integration: Option<String>,
    limit: usize,
) -> Result<Vec<deadletters::DlqRow>, String> {
    let backend = admin.backend.clone();
    let mut rows = detached(async move {
        let integration = integration.as_deref();
        deadletters::with_dead_queue(&*backend, async |_, reader| {
            deadletters::list(reader, integration, limit).await
        })
        .await?
    })
    .await?;
    let runtime = admin.view.runtime();
    for row in &mut rows {
        crate::masking::row(&runtime.config, row);
    }
    Ok(rows)
}

/// One dead message in full, by its id, delivery id or event id, its
/// integration's secrets masked (in the detail and the attempts' errors:
/// receivers echo what they were sent).
pub(crate) async fn dead_one<B: Backend>(
    admin: &Admin<B>,
    id: String,
) -> Result<Option<deadletters::DeadInFull>, String> {
    let backend = admin.backend.clone();
    let mut found = detached(async move {
        deadletters::with_dead_queue(&*backend, async |_, reader| {
            deadletters::show(reader, &id).await
        })
        .await?
    })
    .await?;
    if let Some(full) = &mut found {
        crate::masking::full(&admin.view.runtime().config, full);
    }
    Ok(found)
}
