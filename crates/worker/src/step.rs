//! What one delivery comes to ([`Step`]): nothing more to do, delivered,
//! superseded, or a hand-off (to its lane, to a wait, to the dead queue). The stages
//! make it; the hand-off carries it on.

use std::sync::Arc;

use alertpost_event::job::{DeadLetter, DeliveryJob};

use crate::target::Target;

/// What one delivery of a message comes to.
pub(crate) enum Step {
    /// Nothing to do: found finished or handed on in the journal.
    Done,
    /// Delivered now; journaled before the message is settled.
    Delivered(String),
    /// Given up for a newer event of its alert (counted and recorded when
    /// found); journaled before the message is settled.
    Superseded(String),
    /// Could not start (its integration at its concurrency, its circuit
    /// open): to its lane. Counted `deferred`.
    Lane(Box<LaneJob>, Arc<Target>),
    /// Failed, to be tried again at `not_before`. Counted `retried`.
    Retry(Box<DeliveryJob>, Arc<Target>),
    /// Came back before its due time: waits again, not counted.
    Rewait(Box<DeliveryJob>),
    /// Given up: to the dead queue. Counted by its integration's series
    /// when it has one.
    Dead(Box<DeadLetter>, Option<Arc<Target>>),
}

/// A delivery for its lane, its job already written (around the event's
/// JSON as the message carried it: nothing copied, nothing encoded twice).
pub(crate) struct LaneJob {
    pub delivery_id: String,
    pub integration: String,
    pub hop: u32,
    /// Shared, not copied, by each try of the hand-off.
    pub json: bytes::Bytes,
}
