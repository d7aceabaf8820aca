//! What one delivery comes to ([`Step`]): nothing more to do, delivered,
//! superseded, or a hand-off (to its lane, to a wait, to its alert's
//! shard, to the dead queue). The stages
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
    /// Taken from its alert's shard and could not start now: waits (a
    /// lane is read by every worker, a shard by one). Counted `deferred`.
    Defer(Box<DeliveryJob>, Arc<Target>),
    /// An alert's event or job found on a stream every worker reads: to
    /// its shard, where its alert's one worker takes it. Not counted.
    Forward(Box<Forward>),
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

/// An event or job on its way to its alert's shard ([`Step::Forward`]).
pub(crate) struct Forward {
    pub shard: u16,
    pub body: bytes::Bytes,
    pub kind: &'static str,
    /// The event id, or the delivery id.
    pub id: String,
    /// A job's hop, journaled once confirmed: a message that comes back
    /// never forwards it twice. An event's deliveries are journaled by the
    /// shard's worker.
    pub hop: Option<u32>,
}
