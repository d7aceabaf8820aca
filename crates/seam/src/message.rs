//! The messages of the seam: where they come from ([`Source`]), where a
//! publish goes ([`Destination`]), one to publish ([`Outgoing`]) and one
//! taken from a stream ([`Inbound`]), settled through its backend's
//! [`Settler`].

use std::future::Future;
use std::pin::Pin;
use std::time::SystemTime;

use crate::error::BrokerError;

/// A stream of messages a worker consumes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// Events: the first attempt of each integration they match.
    Events,
    /// Delivery jobs back from a wait, and replays.
    Deliveries,
    /// One integration's deliveries that could not start when due.
    Lane(String),
    /// One shard of the alerts with a key: their events and delivery jobs,
    /// consumed by one worker at a time (per-key order across workers).
    Shard(u16),
    /// The dead letters: read by inspection tools (`alertpost dlq`), never
    /// consumed by a worker.
    Dead,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Events => f.write_str("events"),
            Source::Deliveries => f.write_str("deliveries"),
            Source::Lane(id) => write!(f, "lane {id}"),
            Source::Shard(i) => write!(f, "shard {i}"),
            Source::Dead => f.write_str("dead letters"),
        }
    }
}

/// Where a publish goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// The events, with this routing key (`<source>.<kind>.<severity>`).
    Events { routing_key: String },
    /// The deliveries stream, due now (replays).
    Deliveries,
    /// The deliveries stream, not before `due`.
    Later { due: SystemTime },
    /// The lane of this integration.
    Lane(String),
    /// A shard (`topology::shard_of` of an alert's key): an event
    /// with a key, or a delivery job of one, to its alert's one consumer.
    Shard(u16),
    /// The dead letters.
    Dead,
}

/// A message to publish. Always persistent.
#[derive(Debug, Clone)]
pub struct Outgoing<'a> {
    pub body: &'a [u8],
    /// The body's schema (`alertpost.event.v1`, `alertpost.job.v1`...).
    pub kind: &'static str,
    /// The event id, delivery id or dead-letter id.
    pub message_id: &'a str,
}

/// A boxed future, for the settling half of the seam (one per message, so
/// object-safe rather than generic).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Settles one message with its backend.
pub trait Settler: Send + Sync {
    /// Done with the message.
    fn ack(&self) -> BoxFuture<'_, Result<(), BrokerError>>;
    /// Give the message to a consumer again.
    fn requeue(&self) -> BoxFuture<'_, Result<(), BrokerError>>;
    /// Whether the message is still this worker's: false once what it came
    /// on (RabbitMQ: its channel) is gone, and the backend hands it out
    /// again.
    fn held(&self) -> Held;
}

/// Whether a message is still the worker's (see [`Settler::held`]); cheap
/// to clone and to ask, so a hand-off can look just before each publish.
#[derive(Clone)]
pub struct Held(std::sync::Arc<dyn Fn() -> bool + Send + Sync>);

impl Held {
    pub fn new(check: impl Fn() -> bool + Send + Sync + 'static) -> Held {
        Held(std::sync::Arc::new(check))
    }

    pub fn get(&self) -> bool {
        (self.0)()
    }
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Held({})", self.get())
    }
}

/// A message taken from a stream.
pub struct Inbound {
    pub body: bytes::Bytes,
    /// The body's schema, when the publisher named one.
    pub kind: Option<String>,
    pub message_id: Option<String>,
    /// See the module docs: a hint, not a promise.
    pub redelivered: bool,
    pub source: Source,
    /// The queue it came from, for dead letters and logs.
    pub queue: String,
    settler: Box<dyn Settler>,
}

impl std::fmt::Debug for Inbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbound")
            .field("queue", &self.queue)
            .field("message_id", &self.message_id)
            .field("redelivered", &self.redelivered)
            .finish()
    }
}

/// The parts of an [`Inbound`] a backend fills in.
#[derive(Debug)]
pub struct Received {
    pub body: bytes::Bytes,
    pub kind: Option<String>,
    pub message_id: Option<String>,
    pub redelivered: bool,
    pub source: Source,
    pub queue: String,
}

impl Inbound {
    pub fn new(parts: Received, settler: impl Settler + 'static) -> Inbound {
        Inbound {
            body: parts.body,
            kind: parts.kind,
            message_id: parts.message_id,
            redelivered: parts.redelivered,
            source: parts.source,
            queue: parts.queue,
            settler: Box::new(settler),
        }
    }

    /// Done with the message: the backend forgets it.
    pub async fn ack(&self) -> Result<(), BrokerError> {
        self.settler.ack().await
    }

    /// Give the message back, to be handed out again (to any worker).
    pub async fn requeue(&self) -> Result<(), BrokerError> {
        self.settler.requeue().await
    }

    /// Whether the message is still this worker's: once it is not, nothing
    /// may be handed on for it (the backend is handing it out again, and a
    /// hand-off now would fork its deliveries).
    pub fn held(&self) -> Held {
        self.settler.held()
    }
}
