//! alertpost's wire types and everything pure about them.
//!
//! Layout, along the data's path:
//! - [`event`]: the normalized event (`alertpost.event.v1`), its validation,
//!   id and `received_at` assignment, the size cap and the routing key;
//! - [`normalize`]: one module per source format (Alertmanager, Grafana,
//!   HertzBeat, Grafana OnCall, Aporia) turning a payload into events;
//! - [`job`]: the delivery job and the dead-letter record, the wire types of
//!   the retry and dead queues.
//!
//! Nothing here does I/O. Only the types of this crate derive `Serialize`
//! as a compatibility promise: changing a field is changing the wire format.

pub mod event;
pub mod job;
pub mod normalize;

pub use event::{
    EVENT_JSON_SCHEMA, EVENT_SCHEMA, Event, EventError, Link, MAX_EVENT_BYTES, Refused, Severity,
    Status, delivery_id, encode_all, is_delivery_id, prepare_all,
};
pub use normalize::{Format, NormalizeError, normalize};
