//! What the worker sees of a message broker: the [`Backend`] trait, the
//! messages it hands out ([`Inbound`]), where a publish goes
//! ([`Destination`]) and the errors. RabbitMQ is one backend
//! ([`crate::rabbit`]); the embedded queue of `alertpost run` is to be the
//! second, behind these same types.
//!
//! The contract, whichever backend:
//! - **Streams.** A worker consumes three kinds of [`Source`]: the events
//!   (first attempts), the deliveries (jobs whose wait in [`Destination::Later`]
//!   is over, and replays) and one lane per integration (its deliveries that
//!   could not start when they were due). A stream hands out at most
//!   `prefetch` messages that are not yet settled.
//! - **Settling.** A message stays the worker's until [`Inbound::ack`] (done:
//!   the backend forgets it) or [`Inbound::requeue`] (give it to a consumer
//!   again). A message never settled (the worker died, the connection
//!   dropped, the stream was closed) goes back to its queue.
//! - **Publishing.** [`Session::publish`] returns `Ok` only once the backend
//!   has stored the message durably (RabbitMQ: a publisher confirm, and not
//!   returned as unroutable). Any error means it may or may not be stored.
//! - **`redelivered`** is a hint: true when the backend handed this message
//!   out before without its being settled, so the worker may already have
//!   acted on part of it. False does not mean "first time": a message can
//!   come twice through other paths (a publish repeated after a lost
//!   confirm, a hand-off forked by a lost ack on another worker), so the
//!   worker consults its journal for every delivery, whatever the flag.
//! - **Poison messages** are the backend's business: a message handed out
//!   more than its delivery limit without being acked goes to the dead
//!   queue (RabbitMQ: `x-delivery-limit` on every work queue; the embedded
//!   queue counts deliveries itself). The worker never counts them.
//! - **Bounds.** Every wait on the backend (connecting, declaring,
//!   consuming, a publish and its confirm, a settle) ends within a bound;
//!   one that runs out is an error (`Unavailable`, a broken connection),
//!   never a success.
//! - **Publishing** has its own state ([`Session::publishing`]): blocked by
//!   the broker (RabbitMQ: a memory or disk alarm), or down while the
//!   backend reopens it. Consuming and settling go on meanwhile (RabbitMQ:
//!   on a connection of their own, which an alarm does not block); the
//!   worker takes no new message until publishing is ready again.
//! - **Waiting.** [`Destination::Later`] comes back on the deliveries stream
//!   at its due time or a little after. A backend that cannot wait that
//!   long in one go (RabbitMQ: longer than its largest delay tier) may hand
//!   it out early; the worker then publishes it to `Later` again with the
//!   same due time, and attempts nothing before it.

use std::future::Future;
use std::pin::Pin;
use std::time::SystemTime;

/// A stream of messages a worker consumes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// Events: the first attempt of each integration they match.
    Events,
    /// Delivery jobs back from a wait, and replays.
    Deliveries,
    /// One integration's deliveries that could not start when due.
    Lane(String),
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

/// Whether a session can publish now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Publishing {
    Ready,
    /// The broker refuses publishes for now (RabbitMQ's reason, e.g. a
    /// memory or disk alarm).
    Blocked(String),
    /// The publishing connection or channel is gone; the backend is
    /// reopening it.
    Down(String),
}

impl Publishing {
    pub fn is_ready(&self) -> bool {
        matches!(self, Publishing::Ready)
    }

    /// Why publishing is not ready, for `/readyz` and logs.
    pub fn reason(&self) -> Option<String> {
        match self {
            Publishing::Ready => None,
            Publishing::Blocked(r) => Some(format!("RabbitMQ blocks publishing: {r}")),
            Publishing::Down(r) => Some(format!("cannot publish: {r}")),
        }
    }
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
    /// Where it came from, for dead letters and logs (RabbitMQ: the queue).
    pub origin: String,
    settler: Box<dyn Settler>,
}

impl std::fmt::Debug for Inbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbound")
            .field("origin", &self.origin)
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
    pub origin: String,
}

impl Inbound {
    pub fn new(parts: Received, settler: impl Settler + 'static) -> Inbound {
        Inbound {
            body: parts.body,
            kind: parts.kind,
            message_id: parts.message_id,
            redelivered: parts.redelivered,
            source: parts.source,
            origin: parts.origin,
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

/// A broker a worker can connect to.
pub trait Backend: Send + Sync + 'static {
    type Session: Session;

    /// Connects and declares what every worker needs (the events,
    /// deliveries, waits and dead letters). Bounded in time.
    fn open(&self) -> impl Future<Output = Result<Self::Session, BrokerError>> + Send;

    /// Where it connects, for logs (no secrets).
    fn describe(&self) -> String;
}

/// One connection's worth of a backend. Shared by every task of a worker.
pub trait Session: Send + Sync + 'static {
    type Stream: Stream;
    type Reader: Reader;

    /// Declares what every worker needs again, and the lanes of these
    /// integrations (idempotent): at start, after a reload, and when a
    /// publish finds its queue gone.
    fn declare(&self, lanes: &[String]) -> impl Future<Output = Result<(), BrokerError>> + Send;

    /// Starts consuming `from` with at most `prefetch` unsettled messages.
    fn consume(
        &self,
        from: &Source,
        prefetch: u16,
    ) -> impl Future<Output = Result<Self::Stream, BrokerError>> + Send;

    /// Reads `from` without a consumer (for operators: the dead queue).
    fn reader(
        &self,
        from: &Source,
    ) -> impl Future<Output = Result<Self::Reader, BrokerError>> + Send;

    /// Publishes and waits until the backend has stored the message.
    fn publish(
        &self,
        to: &Destination,
        msg: &Outgoing<'_>,
    ) -> impl Future<Output = Result<(), PublishError>> + Send;

    /// Whether publishing works now, kept up to date by the backend.
    fn publishing(&self) -> tokio::sync::watch::Receiver<Publishing>;

    /// False once the consuming connection is gone (every stream then ends
    /// too). Publishing recovers by itself: see [`Session::publishing`].
    fn is_open(&self) -> bool;

    /// Closes the connection; unsettled messages go back to their queues.
    fn close(&self) -> impl Future<Output = ()> + Send;
}

/// Messages from one [`Source`].
pub trait Stream: Send + 'static {
    /// The next message. `None`: the stream ended (cancelled, by us or the
    /// broker, e.g. its queue was deleted). `Some(Err)`: the channel or
    /// connection broke.
    fn next(&mut self) -> impl Future<Output = Option<Result<Inbound, BrokerError>>> + Send;

    /// Stops handing out messages; those handed out stay the worker's to
    /// settle until [`Stream::close`].
    fn cancel(&self) -> impl Future<Output = ()> + Send;

    /// Closes the stream; what it handed out and was not settled goes back.
    fn close(self) -> impl Future<Output = ()> + Send;
}

/// Takes the messages of one queue one by one, for inspection: each stays
/// stored until acked (removed) and goes back, in place, when the reader
/// closes.
pub trait Reader: Send + 'static {
    /// The next message ready now; `None` when there is none.
    fn next(&mut self) -> impl Future<Output = Result<Option<Inbound>, BrokerError>> + Send;

    /// Gives back every message taken and not acked.
    fn close(self) -> impl Future<Output = ()> + Send;
}

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot connect to RabbitMQ at {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("cannot declare {what}: {reason}")]
    Declare { what: String, reason: String },
    #[error("RabbitMQ connection lost: {0}")]
    Connection(String),
    #[error("RabbitMQ did not answer within {secs}s ({what})")]
    Timeout { what: String, secs: u64 },
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum PublishError {
    /// The broker could not be reached or the channel broke: the publish may
    /// or may not have happened, and was not confirmed.
    #[error("RabbitMQ is unreachable: {0}")]
    Unavailable(String),
    /// The broker refused to take the message (a nack).
    #[error("RabbitMQ refused the message (negative acknowledgement)")]
    Nacked,
    /// No queue is bound for the message: it was returned, not stored.
    #[error(
        "no queue takes messages sent to `{0}` (is the topology declared? run `alertpost setup`)"
    )]
    Unroutable(String),
}
