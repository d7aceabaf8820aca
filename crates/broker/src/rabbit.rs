//! The RabbitMQ backend, over lapin.
//!
//! One [`Broker`] is one AMQP connection (to the first of its URLs that answers). Publishing uses its own channel in
//! confirm mode ([`Publisher`]); each consumer has a channel of its own,
//! with a per-consumer prefetch (quorum queues have no global QoS). lapin's
//! automatic recovery is not used: a lost connection ends every stream with
//! an error and the owner (the worker's supervisor, the producer) reconnects
//! from scratch, which is simpler to reason about than half-recovered
//! channels: every unacked message simply goes back to its queue.
//!
//! [`Rabbit`] and [`RabbitSession`] are the worker's seam
//! ([`crate::seam::Backend`]) over these: a wait ([`Destination::Later`])
//! goes to the smallest delay tier not shorter than it, or the largest,
//! from which it comes back early and is sent round again.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicGetOptions, BasicPublishOptions,
    BasicQosOptions, BasicRejectOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
    ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use lapin::{Confirmation, PublisherConfirm};

use crate::seam::{
    BoxFuture, BrokerError, Destination, Held, Inbound, Outgoing, PublishError, Reader, Received,
    Settler, Source,
};
use crate::topology::Topology;
use crate::{amqp_urls, redact_url, rotation};

/// Persistent messages survive a broker restart (quorum queues store all
/// messages anyway; the flag keeps intent explicit for other queue types).
const PERSISTENT: u8 = 2;

/// How long connecting to one URL may take before it counts as a failure.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The bound on every other wait on RabbitMQ (declaring, opening a
/// channel, consuming, settling, closing), and the default one on a
/// publish's confirm ([`Publisher::with_timeout`]).
pub const BROKER_TIMEOUT: Duration = Duration::from_secs(10);

/// One connection to RabbitMQ.
pub struct Broker {
    conn: Connection,
    topology: Arc<Topology>,
    blocked: tokio::sync::watch::Receiver<Option<String>>,
}

async fn connect_one(url: &str, name: &str) -> Result<Connection, String> {
    let props =
        ConnectionProperties::default().with_connection_name(LongString::from(name.to_owned()));
    match tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect(url, props)).await {
        Ok(Ok(conn)) => Ok(conn),
        // The parser's errors may quote the URL whole, password and all.
        Ok(Err(e)) => Err(e.to_string().replace(url, &redact_url(url))),
        Err(_) => Err(format!("no answer within {}s", CONNECT_TIMEOUT.as_secs())),
    }
}

/// `fut`, or a [`BrokerError::Timeout`] naming `what` after [`BROKER_TIMEOUT`].
async fn bounded<T>(
    what: &str,
    fut: impl std::future::Future<Output = Result<T, BrokerError>>,
) -> Result<T, BrokerError> {
    match tokio::time::timeout(BROKER_TIMEOUT, fut).await {
        Ok(result) => result,
        Err(_) => Err(BrokerError::Timeout {
            what: what.to_owned(),
            secs: BROKER_TIMEOUT.as_secs(),
        }),
    }
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("prefix", &self.topology.prefix())
            .field("connected", &self.is_connected())
            .finish()
    }
}

/// Message counts of one queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueStats {
    /// Ready to be delivered (not counting unacked ones).
    pub messages: u32,
    pub consumers: u32,
}

impl Broker {
    /// Connects to the first of `urls` (one AMQP URL, or several separated
    /// by commas: a cluster's nodes) that answers, trying them in turn from
    /// a random one; `name` shows in RabbitMQ's management UI and logs.
    pub async fn connect(
        urls: &str,
        name: &str,
        topology: Topology,
    ) -> Result<Broker, BrokerError> {
        let list = amqp_urls(urls);
        let mut failures = Vec::new();
        for i in rotation(list.len()) {
            let url = list[i];
            match connect_one(url, name).await {
                Ok(conn) => {
                    if !failures.is_empty() {
                        tracing::info!(url = %redact_url(url), "connected to another node");
                    }
                    return Ok(Broker::on(conn, topology));
                }
                Err(reason) => failures.push(format!("{}: {reason}", redact_url(url))),
            }
        }
        Err(BrokerError::Connect {
            url: redact_url(urls),
            reason: if failures.is_empty() {
                "no URL given".to_owned()
            } else {
                failures.join("; ")
            },
        })
    }

    fn on(conn: Connection, topology: Topology) -> Broker {
        // RabbitMQ's connection.blocked / unblocked, as they come.
        let (tx, blocked) = tokio::sync::watch::channel(None::<String>);
        let mut events = conn.events_listener();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tx.closed() => break,
                    event = events.next() => match event {
                        Some(lapin::Event::ConnectionBlocked(reason)) => {
                            tracing::warn!(%reason, "RabbitMQ blocks this connection's publishes");
                            tx.send_replace(Some(reason));
                        }
                        Some(lapin::Event::ConnectionUnblocked) => {
                            tracing::info!("RabbitMQ unblocked this connection");
                            tx.send_replace(None);
                        }
                        Some(_) => {}
                        None => break,
                    },
                }
            }
        });
        Broker {
            conn,
            topology: Arc::new(topology),
            blocked,
        }
    }

    /// Why RabbitMQ blocks this connection's publishes (a memory or disk
    /// alarm), if it does.
    pub fn blocked(&self) -> Option<String> {
        self.blocked.borrow().clone()
    }

    /// Changes of [`Broker::blocked`].
    pub fn blocked_changes(&self) -> tokio::sync::watch::Receiver<Option<String>> {
        self.blocked.clone()
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    pub fn is_connected(&self) -> bool {
        self.conn.status().connected()
    }

    /// Declares the exchange, every queue and the binding. Idempotent; fails
    /// when a queue exists with other arguments (RabbitMQ cannot change them).
    pub async fn declare(&self) -> Result<(), BrokerError> {
        bounded("declaring the topology", self.declare_parts(true)).await
    }

    /// Declares what producers need (the exchange, the events queue and the
    /// queues it dead-letters into), leaving the delay tiers, whose set is
    /// the workers' configuration, to the workers.
    pub async fn declare_for_producer(&self) -> Result<(), BrokerError> {
        bounded("declaring the topology", self.declare_parts(false)).await
    }

    async fn declare_parts(&self, with_tiers: bool) -> Result<(), BrokerError> {
        let t = &self.topology;
        let channel = self.channel("declare").await?;
        let exchange = t.exchange();
        channel
            .exchange_declare(
                exchange.as_str().into(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(|e| declare_error(format!("exchange {exchange}"), e))?;

        let dead = t.dead_queue();
        let deliveries = t.deliveries_queue();
        let mut queues = vec![
            (dead.clone(), quorum()),
            (deliveries.clone(), work_queue(&dead, t.delivery_limit())),
            (t.events_queue(), work_queue(&dead, t.delivery_limit())),
        ];
        for tier in t.tiers().iter().filter(|_| with_tiers) {
            queues.push((t.retry_queue(*tier), delay_queue(&deliveries, *tier)));
        }
        for (name, args) in queues {
            self.declare_queue(&name, args).await?;
        }
        channel
            .queue_bind(
                t.events_queue().as_str().into(),
                exchange.as_str().into(),
                "#".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| declare_error(format!("binding of queue {}", t.events_queue()), e))?;
        let _ = channel.close(200, "declared".into()).await;
        Ok(())
    }

    /// Declares the lanes of these integrations: work queues like the
    /// others (a delivery limit, then the dead queue).
    pub async fn declare_lanes(&self, integrations: &[String]) -> Result<(), BrokerError> {
        let t = &self.topology;
        let dead = t.dead_queue();
        bounded("declaring the lanes", async {
            for id in integrations {
                let args = work_queue(&dead, t.delivery_limit());
                self.declare_queue(&t.lane_queue(id), args).await?;
            }
            Ok(())
        })
        .await
    }

    /// Declares one durable queue on a channel of its own: a failed
    /// declaration closes its channel, and the error names this queue.
    async fn declare_queue(&self, name: &str, args: FieldTable) -> Result<(), BrokerError> {
        let channel = self.channel("declare").await?;
        channel
            .queue_declare(
                name.into(),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                args,
            )
            .await
            .map_err(|e| declare_error(format!("queue {name}"), e))?;
        let _ = channel.close(200, "declared".into()).await;
        Ok(())
    }

    /// Deletes the exchange and every queue of the topology, messages
    /// included. For tests and teardown, never called by the service.
    pub async fn delete_topology(&self) -> Result<(), BrokerError> {
        bounded("deleting the topology", async {
            let channel = self.channel("delete").await?;
            for name in self.topology.queues() {
                channel
                    .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
                    .await
                    .map_err(|e| declare_error(format!("deletion of queue {name}"), e))?;
            }
            let exchange = self.topology.exchange();
            channel
                .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
                .await
                .map_err(|e| declare_error(format!("deletion of exchange {exchange}"), e))?;
            Ok(())
        })
        .await
    }

    /// Deletes these queues, messages included, where they exist. For tests
    /// and teardown.
    pub async fn delete_queues(&self, names: &[String]) -> Result<(), BrokerError> {
        bounded("deleting queues", async {
            for name in names {
                // A fresh channel each: an error closes the channel it happens on.
                let channel = self.channel("delete").await?;
                channel
                    .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
                    .await
                    .map_err(|e| declare_error(format!("deletion of queue {name}"), e))?;
                let _ = channel.close(200, "deleted".into()).await;
            }
            Ok(())
        })
        .await
    }

    /// Removes every ready message of `queue`; returns how many.
    pub async fn purge(&self, queue: &str) -> Result<u32, BrokerError> {
        bounded("purging a queue", async {
            let channel = self.channel("purge").await?;
            let n = channel
                .queue_purge(queue.into(), lapin::options::QueuePurgeOptions::default())
                .await
                .map_err(|e| declare_error(format!("purge of queue {queue}"), e))?;
            let _ = channel.close(200, "purged".into()).await;
            Ok(n)
        })
        .await
    }

    /// Counts of a queue, by passive declaration.
    pub async fn queue_stats(&self, queue: &str) -> Result<QueueStats, BrokerError> {
        bounded("reading a queue's counts", async {
            let channel = self.channel("stats").await?;
            let q = channel
                .queue_declare(
                    queue.into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..QueueDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await
                .map_err(|e| declare_error(format!("queue {queue}"), e))?;
            let _ = channel.close(200, "done".into()).await;
            Ok(QueueStats {
                messages: q.message_count(),
                consumers: q.consumer_count(),
            })
        })
        .await
    }

    /// A publisher on its own confirm channel.
    pub async fn publisher(&self) -> Result<Publisher, BrokerError> {
        bounded("opening a confirm channel", async {
            let channel = self.channel("publish").await?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .map_err(|e| BrokerError::Connection(format!("confirm mode: {e}")))?;
            Ok(Publisher {
                channel,
                topology: self.topology.clone(),
                blocked: self.blocked.clone(),
                timeout: BROKER_TIMEOUT,
            })
        })
        .await
    }

    /// Starts consuming `source` with manual acks, at most `prefetch`
    /// unacknowledged messages at a time.
    pub async fn consume(
        &self,
        source: &Source,
        prefetch: u16,
        tag: &str,
    ) -> Result<Consumer, BrokerError> {
        let queue = self.topology.queue_of(source);
        bounded(&format!("consuming {queue}"), async {
            let channel = self.channel("consume").await?;
            channel
                .basic_qos(prefetch, BasicQosOptions { global: false })
                .await
                .map_err(|e| BrokerError::Connection(format!("qos on {queue}: {e}")))?;
            let inner = channel
                .basic_consume(
                    queue.as_str().into(),
                    tag.into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(|e| BrokerError::Connection(format!("consume {queue}: {e}")))?;
            Ok(Consumer {
                inner,
                channel,
                source: source.clone(),
                queue: queue.clone(),
                tag: tag.to_owned(),
            })
        })
        .await
    }

    /// A reader of `from` (for inspection tools): messages taken with
    /// `basic.get` on a channel of its own stay unacked until settled, and
    /// go back to the queue when the channel closes.
    pub async fn reader(&self, from: &Source) -> Result<GetChannel, BrokerError> {
        Ok(GetChannel {
            channel: self.channel("get").await?,
            queue: self.topology.queue_of(from),
            source: from.clone(),
        })
    }

    /// Closes the connection; unacked messages go back to their queues.
    /// Bounded: a blocked connection may never get its close out, and is
    /// then dropped.
    pub async fn close(&self) {
        let _ = tokio::time::timeout(BROKER_TIMEOUT, self.conn.close(200, "bye".into())).await;
    }

    async fn channel(&self, what: &str) -> Result<Channel, BrokerError> {
        bounded(&format!("opening a {what} channel"), async {
            self.conn
                .create_channel()
                .await
                .map_err(|e| BrokerError::Connection(format!("opening a {what} channel: {e}")))
        })
        .await
    }
}

/// A [`Reader`] of one queue on a channel of its own (see [`Broker::reader`]).
pub struct GetChannel {
    channel: Channel,
    queue: String,
    source: Source,
}

impl std::fmt::Debug for GetChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GetChannel")
            .field("queue", &self.queue)
            .finish()
    }
}

impl Reader for GetChannel {
    async fn next(&mut self) -> Result<Option<Inbound>, BrokerError> {
        let queue = &self.queue;
        let msg = bounded(&format!("getting from {queue}"), async {
            self.channel
                .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: false })
                .await
                .map_err(|e| BrokerError::Connection(format!("get from {queue}: {e}")))
        })
        .await?;
        Ok(msg.map(|m| inbound(m.delivery, &self.channel, &self.source, queue)))
    }

    async fn close(self) {
        let _ = tokio::time::timeout(BROKER_TIMEOUT, self.channel.close(200, "done".into())).await;
    }
}

/// Publishes with publisher confirms. Cheap to clone; clones share the
/// channel, and confirms of concurrent publishes are pipelined.
#[derive(Clone)]
pub struct Publisher {
    channel: Channel,
    topology: Arc<Topology>,
    /// Its connection's [`Broker::blocked`]: a blocked connection refuses
    /// at once rather than letting the publish wait for its bound.
    blocked: tokio::sync::watch::Receiver<Option<String>>,
    /// How long a publish may wait for its confirm.
    timeout: Duration,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("prefix", &self.topology.prefix())
            .finish()
    }
}

/// A sent message whose confirm is still to come.
#[must_use = "a publish counts only once confirmed"]
pub struct Pending {
    confirm: PublisherConfirm,
    /// Where it went (exchange, routing key), named only if it comes back.
    target: (String, String),
    /// The confirm is not awaited past this.
    deadline: tokio::time::Instant,
    timeout: Duration,
}

impl Pending {
    /// Waits for the broker's verdict, until the publisher's timeout from
    /// the send: after it, `Unavailable` (the message may or may not be
    /// stored).
    pub async fn confirmed(self) -> Result<(), PublishError> {
        let verdict = match tokio::time::timeout_at(self.deadline, self.confirm).await {
            Ok(verdict) => verdict,
            Err(_) => {
                return Err(PublishError::Unavailable(format!(
                    "no confirm within {}s",
                    self.timeout.as_secs_f64()
                )));
            }
        };
        match verdict {
            Ok(Confirmation::Ack(None)) => Ok(()),
            // `mandatory` and no queue bound: acked, but returned, not stored.
            Ok(Confirmation::Ack(Some(_))) => {
                let (exchange, routing_key) = self.target;
                Err(PublishError::Unroutable(if exchange.is_empty() {
                    format!("queue {routing_key}")
                } else {
                    format!("exchange {exchange} with key {routing_key}")
                }))
            }
            Ok(Confirmation::Nack(_)) => Err(PublishError::Nacked),
            // The channel is in confirm mode, so this means it was replaced.
            Ok(Confirmation::NotRequested) => Err(PublishError::Unavailable(
                "the channel is not in confirm mode".to_owned(),
            )),
            Err(e) => Err(PublishError::Unavailable(e.to_string())),
        }
    }
}

impl Publisher {
    pub fn is_open(&self) -> bool {
        self.channel.status().connected()
    }

    /// Why RabbitMQ blocks its connection, if it does.
    pub fn blocked(&self) -> Option<String> {
        self.blocked.borrow().clone()
    }

    /// This publisher, waiting at most `timeout` for each confirm.
    pub fn with_timeout(mut self, timeout: Duration) -> Publisher {
        self.timeout = timeout;
        self
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// Publishes and waits for the confirm.
    pub async fn publish(&self, to: &Destination, msg: &Outgoing<'_>) -> Result<(), PublishError> {
        self.send(to, msg).await?.confirmed().await
    }

    /// Sends without waiting for the confirm: send many, then await each
    /// [`Pending`], to pipeline confirms.
    pub async fn send(
        &self,
        to: &Destination,
        msg: &Outgoing<'_>,
    ) -> Result<Pending, PublishError> {
        if let Some(reason) = self.blocked.borrow().as_ref() {
            return Err(PublishError::Unavailable(format!(
                "RabbitMQ blocks publishing: {reason}"
            )));
        }
        let deadline = tokio::time::Instant::now() + self.timeout;
        let (exchange, routing_key) = route(&self.topology, to, std::time::SystemTime::now());
        let props = BasicProperties::default()
            .with_delivery_mode(PERSISTENT)
            .with_content_type("application/json".into())
            .with_type(msg.kind.into())
            .with_message_id(msg.message_id.into())
            .with_timestamp(now_secs());
        let publish = self.channel.basic_publish(
            exchange.as_str().into(),
            routing_key.as_str().into(),
            BasicPublishOptions {
                mandatory: true,
                ..BasicPublishOptions::default()
            },
            msg.body,
            props,
        );
        let confirm = match tokio::time::timeout_at(deadline, publish).await {
            Ok(sent) => sent.map_err(|e| PublishError::Unavailable(e.to_string()))?,
            Err(_) => {
                return Err(PublishError::Unavailable(format!(
                    "the publish could not be sent within {}s",
                    self.timeout.as_secs_f64()
                )));
            }
        };
        Ok(Pending {
            confirm,
            target: (exchange, routing_key),
            deadline,
            timeout: self.timeout,
        })
    }

    pub async fn close(&self) {
        let _ = tokio::time::timeout(BROKER_TIMEOUT, self.channel.close(200, "bye".into())).await;
    }
}

/// Messages from one queue, each to be settled through its [`Inbound`].
pub struct Consumer {
    inner: lapin::Consumer,
    channel: Channel,
    source: Source,
    queue: String,
    tag: String,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("queue", &self.queue)
            .finish()
    }
}

impl Consumer {
    /// The next message. `None`: the consumer was cancelled (by
    /// [`Consumer::cancel`] or by the broker, e.g. the queue was deleted).
    /// `Some(Err)`: the channel or connection broke; reconnect.
    pub async fn next(&mut self) -> Option<Result<Inbound, BrokerError>> {
        let delivery = self.inner.next().await?;
        Some(
            delivery
                .map(|d| inbound(d, &self.channel, &self.source, &self.queue))
                .map_err(|e| BrokerError::Connection(e.to_string())),
        )
    }

    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// Stops the broker from sending more; messages already received stay
    /// unacked until settled or until the channel closes.
    pub async fn cancel(&self) {
        let cancel = self
            .channel
            .basic_cancel(self.tag.as_str().into(), BasicCancelOptions::default());
        let _ = tokio::time::timeout(BROKER_TIMEOUT, cancel).await;
    }

    /// Closes the channel: what was received and not settled goes back.
    pub async fn close(self) {
        let _ = tokio::time::timeout(BROKER_TIMEOUT, self.channel.close(200, "done".into())).await;
    }
}

fn inbound(
    d: lapin::message::Delivery,
    channel: &Channel,
    source: &Source,
    queue: &str,
) -> Inbound {
    let parts = Received {
        kind: d.properties.kind().as_ref().map(|k| k.as_str().to_owned()),
        message_id: d
            .properties
            .message_id()
            .as_ref()
            .map(|k| k.as_str().to_owned()),
        redelivered: d.redelivered,
        source: source.clone(),
        origin: queue.to_owned(),
        body: bytes::Bytes::from(d.data),
    };
    Inbound::new(parts, Acker(d.acker, channel.status().clone()))
}

/// Settles one delivery on the channel it came on, whose status says
/// whether the delivery is still ours.
struct Acker(lapin::Acker, lapin::ChannelStatus);

impl Settler for Acker {
    fn ack(&self) -> BoxFuture<'_, Result<(), BrokerError>> {
        Box::pin(self.ack())
    }

    fn requeue(&self) -> BoxFuture<'_, Result<(), BrokerError>> {
        Box::pin(self.reject(true))
    }

    fn held(&self) -> Held {
        let status = self.1.clone();
        Held::new(move || status.connected())
    }
}

impl Acker {
    async fn ack(&self) -> Result<(), BrokerError> {
        let acked = bounded("an ack", async {
            self.0
                .ack(BasicAckOptions::default())
                .await
                .map_err(|e| BrokerError::Connection(e.to_string()))
        });
        match acked.await {
            Ok(true) => Ok(()),
            Ok(false) => Err(BrokerError::Connection(
                "ack on a closed channel (the message will be redelivered)".to_owned(),
            )),
            Err(e) => Err(e),
        }
    }

    /// `basic.reject`, not `basic.nack`: from RabbitMQ 4.3 only a reject counts
    /// toward a quorum queue's delivery limit, which ends poison loops
    /// (rabbitmq-server#15387).
    async fn reject(&self, requeue: bool) -> Result<(), BrokerError> {
        let rejected = bounded("a reject", async {
            self.0
                .reject(BasicRejectOptions { requeue })
                .await
                .map_err(|e| BrokerError::Connection(e.to_string()))
        });
        match rejected.await {
            Ok(true) => Ok(()),
            Ok(false) => Err(BrokerError::Connection(
                "reject on a closed channel (the message will be redelivered)".to_owned(),
            )),
            Err(e) => Err(e),
        }
    }
}

/// The exchange and routing key of a destination, published at `now`. A
/// wait goes to the smallest delay tier not shorter than it, or the
/// largest; the worker sends a job that comes back early round again.
fn route(t: &Topology, to: &Destination, now: std::time::SystemTime) -> (String, String) {
    match to {
        Destination::Events { routing_key } => (t.exchange(), routing_key.clone()),
        Destination::Deliveries => (String::new(), t.deliveries_queue()),
        Destination::Later { due } => {
            let wait = due.duration_since(now).unwrap_or_default();
            (String::new(), t.retry_queue(t.tier_for(wait)))
        }
        Destination::Lane(id) => (String::new(), t.lane_queue(id)),
        Destination::Dead => (String::new(), t.dead_queue()),
    }
}

fn quorum() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), text("quorum"));
    args
}

/// A queue workers take from: a delivery limit, then the dead queue.
fn work_queue(dead: &str, delivery_limit: u32) -> FieldTable {
    let mut args = quorum();
    args.insert(
        "x-delivery-limit".into(),
        AMQPValue::LongLongInt(i64::from(delivery_limit)),
    );
    dead_letter_to(&mut args, dead);
    args
}

/// A delay tier: every message waits `tier`, then moves to `target`.
fn delay_queue(target: &str, tier: Duration) -> FieldTable {
    let mut args = quorum();
    let ms = i64::try_from(tier.as_millis()).unwrap_or(i64::MAX);
    args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ms));
    dead_letter_to(&mut args, target);
    args
}

fn dead_letter_to(args: &mut FieldTable, queue: &str) {
    args.insert("x-dead-letter-exchange".into(), text(""));
    args.insert("x-dead-letter-routing-key".into(), text(queue));
    // Quorum queues dead-letter at most once unless both of these are set.
    args.insert("x-dead-letter-strategy".into(), text("at-least-once"));
    args.insert("x-overflow".into(), text("reject-publish"));
}

fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s.to_owned()))
}

fn declare_error(what: String, e: lapin::Error) -> BrokerError {
    let mut reason = e.to_string();
    if reason.contains("PRECONDITION_FAILED") {
        reason.push_str(
            " (it exists with other settings; RabbitMQ cannot change them in place: \
             delete it, or use another --prefix)",
        );
    }
    BrokerError::Declare { what, reason }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;

    #[test]
    fn a_wait_goes_to_the_smallest_tier_not_shorter_or_hops_through_the_largest() {
        let t = Topology::new("p")
            .unwrap()
            .with_tiers(vec![Duration::from_secs(1), Duration::from_secs(30)])
            .unwrap();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let later = |secs: u64| Destination::Later {
            due: now + Duration::from_secs(secs),
        };
        let queue = |d: &Destination| {
            let (exchange, key) = route(&t, d, now);
            assert_eq!(exchange, "", "straight to a queue");
            key
        };
        // (due in, queue)
        for (secs, expected) in [
            (0, "p.retry.1s"),
            (1, "p.retry.1s"),
            (2, "p.retry.30s"),
            (30, "p.retry.30s"),
            // Longer than the largest tier: it comes back early, and the
            // worker sends it round again.
            (3600, "p.retry.30s"),
        ] {
            assert_eq!(queue(&later(secs)), expected, "due in {secs}s");
        }
        // Already due (a clock behind): the shortest wait.
        let past = Destination::Later {
            due: now - Duration::from_secs(5),
        };
        assert_eq!(queue(&past), "p.retry.1s");
        assert_eq!(
            queue(&Destination::Lane("db-oncall".into())),
            "p.lane.db-oncall"
        );
        assert_eq!(queue(&Destination::Dead), "p.dead");
        assert_eq!(queue(&Destination::Deliveries), "p.deliveries");
        assert_eq!(
            route(
                &t,
                &Destination::Events {
                    routing_key: "s.alert.high".into()
                },
                now
            ),
            ("p.events".to_owned(), "s.alert.high".to_owned())
        );
    }
}
