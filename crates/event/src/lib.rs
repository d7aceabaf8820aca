//! alertpost's wire types and everything pure about them.
//!
//! Layout, along the data's path:
//! - [`event`]: the normalized event (`alertpost.event.v1`), its JSON and
//!   routing key;
//! - [`prepare`]: an event made ready to publish (id and `received_at`
//!   assigned, every rule checked, the size cap), and delivery ids;
//! - [`schema`]: its JSON Schema, embedded in the OpenAPI documents;
//! - [`normalize`]: one module per source format (Alertmanager, Grafana,
//!   HertzBeat, Grafana OnCall, Aporia) turning a payload into events;
//! - [`job`]: the delivery job and the dead-letter record, the wire types of
//!   the retry and dead queues;
//! - [`message`]: a queue's message read by its type.
//!
//! Nothing here does I/O. Only the types of this crate derive `Serialize`
//! as a compatibility promise: changing a field is changing the wire format.

pub mod event;
pub mod job;
pub mod message;
pub mod normalize;
pub mod prepare;
pub mod schema;

pub use event::{
    AlertKey, EVENT_SCHEMA, Event, EventError, Link, MAX_EVENT_BYTES, Position, Severity, Status,
};
pub use normalize::{Format, NormalizeError, normalize};
pub use prepare::{Refused, delivery_id, encode_all, is_delivery_id, prepare_all, stamp};
pub use schema::EVENT_JSON_SCHEMA;
