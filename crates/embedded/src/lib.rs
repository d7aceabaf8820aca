//! The embedded backend: the broker seam (`alertpost_seam`) over the
//! store's durable queue (`alertpost_store::queue`), for `alertpost run`:
//! one process, no RabbitMQ, the same worker.
//!
//! Queues are named as on RabbitMQ (`<prefix>.events`, `.deliveries`,
//! `.lane.<id>`, `.dead`). A wait ([`Destination::Later`]) goes to the
//! queue's due-time index and comes back on the deliveries stream at its
//! due time (never early: no tiers). The poison limit is the queue's
//! (its delivery count is kept on disk). Publishing is always ready: there
//! is no broker to block it; a publish returns once the message is on disk.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use alertpost_event::{EVENT_SCHEMA, Event};
use alertpost_seam::{
    Backend, BrokerError, Destination, Held, Inbound, Outgoing, PublishError, Publishing, Reader,
    Session, Source, Stream, Topology,
};
use alertpost_seam::{BoxFuture, NotReady, ProducerError, Publish, Received, Settler};
use alertpost_store::queue::{DurableQueue, QueuedMessage, Taken};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

/// The backend's name in errors and logs.
pub const EMBEDDED: &str = "the embedded queue";

/// A failure of the queue's database, in the embedded queue's words.
fn broken(reason: impl std::fmt::Display) -> BrokerError {
    BrokerError::Broken {
        backend: EMBEDDED,
        reason: reason.to_string(),
    }
}

/// The durable queue, as a worker's backend.
#[derive(Clone)]
pub struct Embedded {
    queue: DurableQueue,
    topology: Topology,
    publishing: Arc<watch::Sender<Publishing>>,
}

impl std::fmt::Debug for Embedded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedded")
            .field("prefix", &self.topology.prefix())
            .finish()
    }
}

impl Embedded {
    pub fn new(queue: DurableQueue, topology: Topology) -> Embedded {
        Embedded {
            queue,
            topology,
            publishing: Arc::new(watch::channel(Publishing::Ready).0),
        }
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// The queue a destination's message goes to (`Later`: after its wait):
    /// the one its source is read from.
    fn queue_for(&self, to: &Destination) -> String {
        let source = match to {
            // One process holds every key: no shards.
            Destination::Events { .. } | Destination::Shard(_) => Source::Events,
            Destination::Deliveries | Destination::Later { .. } => Source::Deliveries,
            Destination::Lane(id) => Source::Lane(id.clone()),
            Destination::Dead => Source::Dead,
        };
        self.topology.queue_of(&source)
    }

    /// Stores a message for `to`; returns once it is on disk.
    pub async fn publish(&self, to: &Destination, msg: &Outgoing<'_>) -> Result<(), PublishError> {
        let queue = self.queue_for(to);
        let message = QueuedMessage {
            kind: msg.kind.to_owned(),
            message_id: msg.message_id.to_owned(),
            body: msg.body.to_vec(),
            deliveries: 0,
        };
        let stored = match to {
            Destination::Later { due } => self.queue.publish_later(*due, &queue, &message).await,
            _ => self.queue.publish(&queue, &message).await,
        };
        stored.map_err(|e| PublishError::Unavailable(format!("{EMBEDDED} cannot store it: {e}")))
    }
}

impl Backend for Embedded {
    type Session = Embedded;

    async fn open(&self) -> Result<Embedded, BrokerError> {
        Ok(self.clone())
    }

    fn describe(&self) -> String {
        EMBEDDED.to_owned()
    }

    fn name(&self) -> &'static str {
        EMBEDDED
    }
}

impl Session for Embedded {
    type Stream = EmbeddedStream;
    type Reader = EmbeddedReader;

    async fn declare(&self, _lanes: &[String]) -> Result<(), BrokerError> {
        // Queues exist as soon as something is published to them.
        Ok(())
    }

    async fn consume(&self, from: &Source, prefetch: u16) -> Result<EmbeddedStream, BrokerError> {
        Ok(EmbeddedStream {
            queue: self.queue.clone(),
            name: self.topology.queue_of(from),
            source: from.clone(),
            window: Arc::new(Semaphore::new(usize::from(prefetch.max(1)))),
            out: Arc::new(Mutex::new(HashMap::new())),
            cancelled: Arc::new(tokio::sync::Notify::new()),
            ended: false,
        })
    }

    async fn reader(&self, from: &Source) -> Result<EmbeddedReader, BrokerError> {
        Ok(EmbeddedReader {
            queue: self.queue.clone(),
            name: self.topology.queue_of(from),
            source: from.clone(),
            out: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    async fn purge(&self, from: &Source) -> Result<usize, BrokerError> {
        // Taken and acked one by one: a local disk's work, no round trips.
        let mut reader = self.reader(from).await?;
        let mut n = 0;
        while let Some(msg) = reader.next().await? {
            msg.ack().await?;
            n += 1;
        }
        reader.close().await;
        Ok(n)
    }

    async fn publish(&self, to: &Destination, msg: &Outgoing<'_>) -> Result<(), PublishError> {
        Embedded::publish(self, to, msg).await
    }

    fn publishing(&self) -> watch::Receiver<Publishing> {
        self.publishing.subscribe()
    }

    fn is_open(&self) -> bool {
        true
    }

    fn backend(&self) -> &'static str {
        EMBEDDED
    }

    async fn close(&self) {}
}

/// Events into the embedded queue, for the ingest of `alertpost run`: each
/// request's events stored with one flush; `202` means on disk.
#[derive(Clone, Debug)]
pub struct EmbeddedProducer {
    backend: Embedded,
}

impl EmbeddedProducer {
    pub fn new(backend: Embedded) -> EmbeddedProducer {
        EmbeddedProducer { backend }
    }
}

impl Publish for EmbeddedProducer {
    fn backend(&self) -> &'static str {
        EMBEDDED
    }

    async fn publish_all(&self, mut events: Vec<Event>) -> Result<Vec<Event>, ProducerError> {
        let bodies = alertpost_event::encode_all(&mut events, time::OffsetDateTime::now_utc())?;
        let messages: Vec<QueuedMessage> = events
            .iter()
            .zip(bodies)
            .map(|(e, body)| QueuedMessage {
                kind: EVENT_SCHEMA.to_owned(),
                message_id: e.id.clone(),
                body,
                deliveries: 0,
            })
            .collect();
        let queue = self.backend.topology.events_queue();
        match self.backend.queue.publish_all(&queue, &messages).await {
            Ok(()) => Ok(events),
            Err(e) => Err(ProducerError::Unavailable {
                backend: EMBEDDED,
                confirmed: 0,
                total: events.len(),
                reason: e.to_string(),
            }),
        }
    }

    async fn check(&self) -> Result<(), NotReady> {
        Ok(())
    }

    fn with_timeout(self, _timeout: std::time::Duration) -> EmbeddedProducer {
        // A local disk write: bounded by the disk, not by a broker.
        self
    }

    async fn close(&self) {}
}

/// Messages handed out and not settled, by key: given back on close.
type Out = Arc<Mutex<HashMap<Vec<u8>, Taken>>>;

/// One queue's messages, at most `prefetch` unsettled.
pub struct EmbeddedStream {
    queue: DurableQueue,
    name: String,
    source: Source,
    window: Arc<Semaphore>,
    out: Out,
    cancelled: Arc<tokio::sync::Notify>,
    ended: bool,
}

impl Stream for EmbeddedStream {
    async fn next(&mut self) -> Option<Result<Inbound, BrokerError>> {
        if self.ended {
            return None;
        }
        let cancelled = self.cancelled.clone();
        let permit = tokio::select! {
            p = self.window.clone().acquire_owned() => p.ok()?,
            _ = cancelled.notified() => {
                self.ended = true;
                return None;
            }
        };
        loop {
            // Registered before looking, so an arrival in between counts.
            let arrival = self.queue.next_arrival();
            match self.queue.take(&self.name) {
                Ok(Some(taken)) => return Some(Ok(self.inbound(taken, permit))),
                Ok(None) => {}
                Err(e) => return Some(Err(broken(e))),
            }
            tokio::select! {
                _ = arrival => {}
                _ = cancelled.notified() => {
                    self.ended = true;
                    return None;
                }
            }
        }
    }

    async fn cancel(&self) {
        self.cancelled.notify_one();
    }

    async fn close(self) {
        give_back(&self.queue, &self.out);
    }
}

impl EmbeddedStream {
    fn inbound(&self, taken: Taken, permit: OwnedSemaphorePermit) -> Inbound {
        inbound(
            &self.queue,
            &self.name,
            &self.source,
            &self.out,
            taken,
            Some(permit),
        )
    }
}

/// A message taken, as the worker sees it; noted in `out` until settled.
fn inbound(
    queue: &DurableQueue,
    name: &str,
    source: &Source,
    out: &Out,
    taken: Taken,
    permit: Option<OwnedSemaphorePermit>,
) -> Inbound {
    let parts = Received {
        body: bytes::Bytes::from(taken.message.body.clone()),
        kind: Some(taken.message.kind.clone()),
        message_id: Some(taken.message.message_id.clone()),
        redelivered: taken.redelivered,
        source: source.clone(),
        queue: name.to_owned(),
    };
    out.lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(taken.key.clone(), taken.clone());
    Inbound::new(
        parts,
        QueueSettler {
            queue: queue.clone(),
            taken,
            out: out.clone(),
            permit: Mutex::new(permit),
        },
    )
}

/// Gives back what was handed out and not settled, in its old order.
fn give_back(queue: &DurableQueue, out: &Out) {
    let mut taken: Vec<Taken> = {
        let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
        out.drain().map(|(_, t)| t).collect()
    };
    // Each goes to the front: the newest first (keys grow with arrival).
    taken.sort_by(|a, b| b.key.cmp(&a.key));
    for t in taken {
        queue.requeue(&t);
    }
}

/// One queue read message by message (the operator's dead-letter tools);
/// what was taken and not acked goes back when it closes or is dropped.
pub struct EmbeddedReader {
    queue: DurableQueue,
    name: String,
    source: Source,
    out: Out,
}

impl Reader for EmbeddedReader {
    async fn next(&mut self) -> Result<Option<Inbound>, BrokerError> {
        match self.queue.take(&self.name) {
            Ok(Some(taken)) => Ok(Some(inbound(
                &self.queue,
                &self.name,
                &self.source,
                &self.out,
                taken,
                None,
            ))),
            Ok(None) => Ok(None),
            Err(e) => Err(broken(e)),
        }
    }

    async fn close(self) {
        // Dropped here: `Drop` gives the rest back.
    }
}

impl Drop for EmbeddedReader {
    fn drop(&mut self) {
        give_back(&self.queue, &self.out);
    }
}

/// Settles one message; its slot in the window is freed then.
struct QueueSettler {
    queue: DurableQueue,
    taken: Taken,
    out: Out,
    permit: Mutex<Option<OwnedSemaphorePermit>>,
}

impl QueueSettler {
    fn done(&self) -> bool {
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let was_out = out.remove(&self.taken.key).is_some();
        self.permit.lock().unwrap_or_else(|e| e.into_inner()).take();
        was_out
    }
}

impl Settler for QueueSettler {
    fn ack(&self) -> BoxFuture<'_, Result<(), BrokerError>> {
        Box::pin(async move {
            if !self.done() {
                return Err(broken("already settled or given back".to_owned()));
            }
            self.queue.ack(&self.taken).map_err(broken)
        })
    }

    fn requeue(&self) -> BoxFuture<'_, Result<(), BrokerError>> {
        Box::pin(async move {
            if self.done() {
                self.queue.requeue(&self.taken);
            }
            Ok(())
        })
    }

    fn held(&self) -> Held {
        // The queue and key only: a hand-off asks for this once per
        // delivery, and the message's body is not needed to answer.
        let queue = self.queue.clone();
        let (name, key) = (self.taken.queue.clone(), self.taken.key.clone());
        Held::new(move || queue.is_out_at(&name, &key))
    }
}
