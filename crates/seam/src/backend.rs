//! The worker's side of the seam: a [`Backend`] opens a [`Session`], which
//! consumes [`Stream`]s, reads a queue through a [`Reader`] and publishes;
//! and the contract every backend keeps.
//!
//! The contract, whichever backend:
//! - **Streams.** A worker consumes these kinds of [`Source`]: the events
//!   (first attempts), the deliveries (jobs whose wait in [`Destination::Later`]
//!   is over, and replays), one lane per integration (its deliveries that
//!   could not start when they were due) and, on a [`Session::sharded`]
//!   backend, the shards (events and jobs of alerts with a key; the
//!   backend gives each shard to one worker at a time). A stream hands out
//!   at most `prefetch` messages that are not yet settled.
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
use std::time::Duration;

use crate::error::{BrokerError, PublishError};
use crate::message::{Destination, Inbound, Outgoing, Source};

/// Whether a session can publish now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Publishing {
    Ready,
    /// The broker refuses publishes for now; the text says which and why
    /// (RabbitMQ: a memory or disk alarm).
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
            Publishing::Blocked(r) => Some(r.clone()),
            Publishing::Down(r) => Some(format!("cannot publish: {r}")),
        }
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

    /// Its name in what operators read ("RabbitMQ", "the embedded queue").
    fn name(&self) -> &'static str;
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

    /// Removes every message of `from` that is ready (not one a reader or
    /// a consumer holds); returns how many. For operators: the dead queue.
    fn purge(&self, from: &Source) -> impl Future<Output = Result<usize, BrokerError>> + Send;

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

    /// Its backend's name in what operators read (see [`Backend::name`]).
    fn backend(&self) -> &'static str;

    /// Whether the alerts with a key come on [`Source::Shard`] streams,
    /// each consumed by one worker at a time (RabbitMQ); false where one
    /// process holds every key (the embedded queue), and events and jobs
    /// come on the events and deliveries streams whatever their key.
    fn sharded(&self) -> bool {
        false
    }

    /// On a sharded backend, the shards this worker should consume, kept
    /// in step with the workers there are ([`crate::topology::shards_held`]
    /// over the members the backend hears of); `None` elsewhere.
    fn shards(&self) -> Option<tokio::sync::watch::Receiver<Vec<u16>>> {
        None
    }

    /// Tells the other workers this one is leaving (it stops taking and
    /// lets its shards go), so they take its shards as soon as it closes
    /// them rather than once it is unheard. Bounded; nothing where the
    /// backend is not sharded.
    fn leave(&self) -> impl Future<Output = ()> + Send {
        std::future::ready(())
    }
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

/// The bound the worker holds every publish to, whatever the backend
/// promises: a publish and its confirm, or a failure after this long.
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

/// [`Session::publish`], bounded by [`PUBLISH_TIMEOUT`]: past it,
/// `Unavailable` (the message may or may not be stored).
pub async fn publish_bounded<S: Session>(
    session: &S,
    to: &Destination,
    msg: &Outgoing<'_>,
) -> Result<(), PublishError> {
    match tokio::time::timeout(PUBLISH_TIMEOUT, session.publish(to, msg)).await {
        Ok(result) => result,
        Err(_) => Err(PublishError::Unavailable(format!(
            "{} did not confirm within {}s",
            session.backend(),
            PUBLISH_TIMEOUT.as_secs()
        ))),
    }
}
