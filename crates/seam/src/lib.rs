//! The broker seam: what the worker and the ingest see of a message
//! broker, whichever backend carries the messages. RabbitMQ
//! (`alertpost-rabbitmq`) and the embedded queue of `alertpost run`
//! (`alertpost-embedded`) implement it side by side; nothing above the seam
//! knows which one it talks to.
//!
//! Layout:
//! - [`message`]: where a message comes from ([`Source`]) and where a
//!   publish goes ([`Destination`]); a message to publish ([`Outgoing`])
//!   and one taken from a stream ([`Inbound`]), settled through its
//!   backend's [`Settler`];
//! - [`backend`]: the worker's side: [`Backend`] → [`Session`] →
//!   [`Stream`] and [`Reader`], whether publishing works now
//!   ([`Publishing`]), the contract every backend keeps, and the bound on
//!   every publish ([`publish_bounded`]);
//! - [`produce`]: the ingest's side: [`Publish`], events in, stored;
//! - [`topology`]: the queues' names for a prefix, and the delay tiers;
//! - [`error`]: the errors, worded by the backend that failed.

pub mod backend;
pub mod error;
pub mod message;
pub mod produce;
pub mod topology;

pub use backend::{Backend, PUBLISH_TIMEOUT, Publishing, Reader, Session, Stream, publish_bounded};
pub use error::{BrokerError, PublishError};
pub use message::{BoxFuture, Destination, Held, Inbound, Outgoing, Received, Settler, Source};
pub use produce::{NotReady, ProducerError, Publish};
pub use topology::{Topology, TopologyError};
