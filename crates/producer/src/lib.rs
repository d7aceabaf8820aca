//! Publish alert events to alertpost.
//!
//! ```no_run
//! # async fn demo() -> Result<(), alertpost_producer::ProducerError> {
//! use alertpost_event::{Event, Status};
//! use alertpost_producer::Producer;
//!
//! let producer = Producer::connect("amqp://guest:guest@127.0.0.1:5672/%2f", "alertpost", "billing-service").await?;
//! let event = producer.publish(Event::new("billing", Status::Firing, "Invoices are failing")).await?;
//! println!("published {}", event.id);
//! # Ok(()) }
//! ```
//!
//! An event counts as published only once RabbitMQ has confirmed it: every
//! `Ok` here means the broker holds the event on disk in a queue. Events are
//! validated and prepared ([`Event::prepare`]) before anything is sent. The
//! producer keeps one connection, which only publishes (consumers of the
//! same service should use their own: RabbitMQ blocks a publishing
//! connection under a memory or disk alarm), and reconnects on the next
//! publish after a failure, answering [`ProducerError::Unavailable`] while
//! it cannot. The URL may list several nodes of a cluster, separated by
//! commas: connecting tries them in turn, from a random one.
//!
//! Every wait is bounded ([`Producer::with_timeout`], 10 s by default):
//! connecting, and each confirm. While RabbitMQ blocks the connection (an
//! alarm), publishes fail at once with `Unavailable`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use alertpost_event::{EVENT_SCHEMA, Event, encode_all};
use alertpost_rabbitmq::{Broker, Publisher, RABBITMQ};
/// What a publish can come to, and the trait the ingest publishes through
/// (this producer, or the embedded queue's): the seam's.
pub use alertpost_seam::{NotReady, ProducerError, Publish};
use alertpost_seam::{Outgoing, PublishError, Topology};
use time::OffsetDateTime;
use tokio::sync::{Mutex, Notify};

/// Confirms awaited per batch window: bounds memory for large inputs while
/// keeping the broker busy.
const WINDOW: usize = 512;

/// After a failed connection attempt, publishes fail fast for this long
/// instead of each waiting on a broker that is down.
const RECONNECT_PAUSE: Duration = Duration::from_secs(1);

impl Publish for Producer {
    fn backend(&self) -> &'static str {
        RABBITMQ
    }

    async fn publish_all(&self, events: Vec<Event>) -> Result<Vec<Event>, ProducerError> {
        Producer::publish_all(self, events).await
    }

    async fn check(&self) -> Result<(), NotReady> {
        Producer::check(self).await
    }

    fn with_timeout(self, timeout: Duration) -> Producer {
        Producer::with_timeout(self, timeout)
    }

    async fn close(&self) {
        Producer::close(self).await
    }
}

/// A connection to RabbitMQ that publishes events with confirms.
#[derive(Clone)]
pub struct Producer {
    inner: Arc<Inner>,
    /// The bound on getting a connection and on each confirm.
    timeout: Duration,
}

struct Inner {
    url: String,
    name: String,
    topology: Topology,
    state: Mutex<State>,
    /// A connection attempt ended (either way).
    attempted: Notify,
}

#[derive(Default)]
struct State {
    conn: Option<(Broker, Publisher)>,
    last_failure: Option<(Instant, String)>,
    /// A connection attempt runs (in a task of its own: a caller that gives
    /// up waiting does not cut it short, so a slow first node does not keep
    /// the next from being tried).
    connecting: bool,
    closed: bool,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("prefix", &self.inner.topology.prefix())
            .finish()
    }
}

impl Producer {
    /// Connects and declares the topology now; fails if it cannot.
    pub async fn connect(url: &str, prefix: &str, name: &str) -> Result<Producer, ProducerError> {
        let producer = Producer::lazy(url, Topology::new(prefix)?, name);
        producer
            .publisher()
            .await
            .map_err(|reason| ProducerError::Unavailable {
                backend: RABBITMQ,
                confirmed: 0,
                total: 0,
                reason,
            })?;
        Ok(producer)
    }

    /// A producer that connects on first use (for servers that must start,
    /// and answer "unavailable", while the broker is down).
    pub fn lazy(url: &str, topology: Topology, name: &str) -> Producer {
        Producer {
            inner: Arc::new(Inner {
                url: url.to_owned(),
                name: name.to_owned(),
                topology,
                state: Mutex::new(State::default()),
                attempted: Notify::new(),
            }),
            timeout: alertpost_rabbitmq::BROKER_TIMEOUT,
        }
    }

    /// This producer (sharing its connection) with every wait bounded by
    /// `timeout`: getting a connection, and each confirm. A publish that
    /// runs out is `Unavailable` (the events may or may not be stored).
    pub fn with_timeout(mut self, timeout: Duration) -> Producer {
        self.timeout = timeout;
        self
    }

    pub fn topology(&self) -> &Topology {
        &self.inner.topology
    }

    /// Whether the producer is connected, connecting if it is not.
    pub async fn ready(&self) -> bool {
        self.check().await.is_ok()
    }

    /// Connected (connecting if it is not) and not blocked by RabbitMQ; else
    /// why not.
    pub async fn check(&self) -> Result<(), NotReady> {
        self.publisher().await.map_err(|reason| NotReady {
            reason,
            blocked: false,
        })?;
        let state = self.inner.state.lock().await;
        match state.conn.as_ref().and_then(|(broker, _)| broker.blocked()) {
            Some(reason) => Err(NotReady {
                reason: format!("{RABBITMQ} blocks publishing: {reason}"),
                blocked: true,
            }),
            None => Ok(()),
        }
    }

    /// Prepares and publishes one event; returns it as published (with its
    /// id and `received_at`).
    pub async fn publish(&self, event: Event) -> Result<Event, ProducerError> {
        let mut events = self.publish_all(vec![event]).await?;
        Ok(events.remove(0))
    }

    /// Prepares every event (refusing the whole batch if one is invalid),
    /// then publishes them with pipelined confirms. `Ok` means every event
    /// was confirmed.
    pub async fn publish_all(&self, mut events: Vec<Event>) -> Result<Vec<Event>, ProducerError> {
        let bodies = encode_all(&mut events, OffsetDateTime::now_utc())?;
        let total = events.len();
        let mut confirmed = 0;
        let publisher = self
            .publisher()
            .await
            .map_err(|reason| ProducerError::Unavailable {
                backend: RABBITMQ,
                confirmed,
                total,
                reason,
            })?;
        // Each body is dropped once sent (the channel holds its own copy),
        // so a large batch is held encoded only until it goes out.
        let mut bodies = bodies.into_iter();
        for window in events.chunks(WINDOW) {
            let mut pending = Vec::with_capacity(window.len());
            for (event, body) in window.iter().zip(bodies.by_ref()) {
                let to = alertpost_seam::topology::event_destination(event);
                let msg = Outgoing {
                    body: &body,
                    kind: EVENT_SCHEMA,
                    message_id: &event.id,
                };
                match publisher.send(&to, &msg).await {
                    Ok(p) => pending.push(p),
                    Err(e) => return Err(self.failed(&publisher, e, confirmed, total).await),
                }
            }
            for p in pending {
                match p.confirmed().await {
                    Ok(()) => confirmed += 1,
                    Err(e) => return Err(self.failed(&publisher, e, confirmed, total).await),
                }
            }
        }
        Ok(events)
    }

    /// Closes the connection.
    pub async fn close(&self) {
        let mut state = self.inner.state.lock().await;
        state.closed = true;
        if let Some((broker, publisher)) = state.conn.take() {
            publisher.close().await;
            broker.close().await;
        }
    }

    async fn failed(
        &self,
        publisher: &Publisher,
        error: PublishError,
        confirmed: usize,
        total: usize,
    ) -> ProducerError {
        match error {
            PublishError::Unavailable(reason) => {
                // Forget the broken connection; the next publish reconnects.
                let mut state = self.inner.state.lock().await;
                if state
                    .conn
                    .as_ref()
                    .is_some_and(|(_, p)| !p.is_open() || !publisher.is_open())
                {
                    state.conn = None;
                }
                ProducerError::Unavailable {
                    backend: RABBITMQ,
                    confirmed,
                    total,
                    reason,
                }
            }
            source => ProducerError::Refused {
                backend: RABBITMQ,
                confirmed,
                total,
                source,
            },
        }
    }

    /// The current publisher, connecting (and declaring) if needed, within
    /// the timeout.
    async fn publisher(&self) -> Result<Publisher, String> {
        let publisher = match tokio::time::timeout(self.timeout, self.connected()).await {
            Ok(result) => result?,
            Err(_) => {
                return Err(format!(
                    "no connection within {}s",
                    self.timeout.as_secs_f64()
                ));
            }
        };
        Ok(publisher.with_timeout(self.timeout))
    }

    async fn connected(&self) -> Result<Publisher, String> {
        loop {
            let attempted = self.inner.attempted.notified();
            tokio::pin!(attempted);
            // Registered before the state is read: an attempt that ends
            // in between still wakes this one.
            attempted.as_mut().enable();
            {
                let mut state = self.inner.state.lock().await;
                if let Some((broker, publisher)) = &state.conn {
                    if broker.is_connected() && publisher.is_open() {
                        return Ok(publisher.clone());
                    }
                    tracing::warn!("RabbitMQ connection lost; reconnecting");
                    state.conn = None;
                }
                if !state.connecting {
                    if let Some((at, reason)) = &state.last_failure
                        && at.elapsed() < RECONNECT_PAUSE
                    {
                        return Err(reason.clone());
                    }
                    state.connecting = true;
                    state.closed = false;
                    tokio::spawn(connect(self.inner.clone()));
                }
            }
            attempted.await;
        }
    }
}

/// One connection attempt; its outcome goes into the state for every
/// caller waiting, and for the next ones.
async fn connect(inner: Arc<Inner>) {
    let result = open(&inner).await;
    let mut state = inner.state.lock().await;
    state.connecting = false;
    match result {
        Ok((broker, publisher)) if state.closed => {
            drop(state);
            publisher.close().await;
            broker.close().await;
        }
        Ok(conn) => {
            if state.last_failure.take().is_some() {
                tracing::info!("RabbitMQ connection restored");
            }
            state.conn = Some(conn);
        }
        Err(reason) => {
            tracing::warn!(%reason, "cannot reach RabbitMQ");
            state.last_failure = Some((Instant::now(), reason));
        }
    }
    inner.attempted.notify_waiters();
}

async fn open(inner: &Inner) -> Result<(Broker, Publisher), String> {
    let broker = Broker::connect(&inner.url, &inner.name, inner.topology.clone())
        .await
        .map_err(|e| e.to_string())?;
    let ready = async {
        broker.declare_for_producer().await?;
        broker.publisher().await
    };
    match ready.await {
        Ok(publisher) => Ok((broker, publisher)),
        Err(e) => {
            broker.close().await;
            Err(e.to_string())
        }
    }
}
