//! The front door's side of the seam: what the ingest publishes events
//! through ([`Publish`]), RabbitMQ's producer or, in `alertpost run`, the
//! embedded queue; and what a publish of events can come to.

use std::time::Duration;

use alertpost_event::{Event, Refused};

use crate::error::PublishError;
use crate::topology::TopologyError;

#[derive(Debug, thiserror::Error)]
pub enum ProducerError {
    /// An event was refused before anything was sent; `index` is its place
    /// in the batch.
    #[error("event {index}: {source}")]
    Invalid {
        index: usize,
        source: alertpost_event::EventError,
    },
    /// The backend cannot store events now (`backend` says which: RabbitMQ
    /// unreachable or not confirming, the embedded queue's disk). Nothing
    /// of this call was confirmed beyond `confirmed` events.
    #[error("{backend} is unavailable ({confirmed} of {total} events confirmed): {reason}")]
    Unavailable {
        backend: &'static str,
        confirmed: usize,
        total: usize,
        reason: String,
    },
    /// The broker refused an event (nack, or no queue bound).
    #[error("{backend} refused an event ({confirmed} of {total} events confirmed): {source}")]
    Refused {
        backend: &'static str,
        confirmed: usize,
        total: usize,
        source: PublishError,
    },
    #[error("invalid prefix: {0}")]
    Topology(#[from] TopologyError),
}

impl From<Refused> for ProducerError {
    fn from(r: Refused) -> ProducerError {
        ProducerError::Invalid {
            index: r.index,
            source: r.source,
        }
    }
}

/// What the ingest publishes through. `Ok` means every event is stored
/// durably; the errors are [`ProducerError`]'s.
pub trait Publish: Clone + Send + Sync + 'static {
    /// Prepares every event (refusing the whole batch if one is invalid),
    /// then stores them all.
    fn publish_all(
        &self,
        events: Vec<Event>,
    ) -> impl std::future::Future<Output = Result<Vec<Event>, ProducerError>> + Send;

    /// The backend's name, for what the ingest answers ("RabbitMQ", "the
    /// embedded queue").
    fn backend(&self) -> &'static str;

    /// Ready to store, or why not.
    fn check(&self) -> impl std::future::Future<Output = Result<(), NotReady>> + Send;

    /// This publisher with every wait bounded by `timeout`.
    fn with_timeout(self, timeout: Duration) -> Self;

    fn close(&self) -> impl std::future::Future<Output = ()> + Send;
}

/// Why a publisher cannot store events now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotReady {
    pub reason: String,
    /// The broker blocks publishing (RabbitMQ: a memory or disk alarm),
    /// rather than being unreachable.
    pub blocked: bool,
}
