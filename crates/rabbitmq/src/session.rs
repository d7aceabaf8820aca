//! The RabbitMQ backend as the worker sees it: [`Rabbit`] connects,
//! [`RabbitSession`] is two connections, one to consume (a channel per
//! [`Consumer`], and every ack) and one to publish (a confirm channel).
//!
//! Two, because RabbitMQ blocks a connection that publishes while a memory
//! or disk alarm lasts, and a blocked connection sends nothing, acks
//! included: on one connection, an alarm would wedge the whole worker. The
//! publishing side is watched ([`Session::publishing`]): blocked, or down
//! (its channel or connection closed), and then reopened with a doubling
//! pause, while the consuming side goes on.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, watch};

use alertpost_seam::{
    Backend, BrokerError, Destination, Inbound, Outgoing, PublishError, Publishing, Session,
    Source, Stream, Topology,
};

use crate::connection::{Broker, RABBITMQ};
use crate::consumer::{Consumer, GetChannel};
use crate::publisher::{Publisher, unreachable};
use crate::urls::redact_url;

/// The publishing side is looked at this often (a channel that closes
/// sends no event of its own).
const WATCH_EVERY: Duration = Duration::from_millis(200);
/// Pauses between attempts to reopen the publishing side.
const REOPEN_MIN: Duration = Duration::from_millis(250);
const REOPEN_MAX: Duration = Duration::from_secs(5);

/// RabbitMQ at one URL (or a comma-separated list: a cluster's nodes),
/// with one topology.
#[derive(Debug, Clone)]
pub struct Rabbit {
    urls: String,
    /// Names the connections in RabbitMQ and prefixes consumer tags.
    name: String,
    topology: Topology,
    /// Whether opening a session declares the topology (a worker's does).
    declares: bool,
}

impl Rabbit {
    pub fn new(urls: &str, name: &str, topology: Topology) -> Rabbit {
        Rabbit {
            urls: urls.to_owned(),
            name: name.to_owned(),
            topology,
            declares: true,
        }
    }

    /// This backend for a tool that only reads and replays (`alertpost
    /// dlq`): its sessions declare nothing, so a tool run without the
    /// workers' config leaves no queue of its own behind (default delay
    /// tiers the workers do not use).
    pub fn without_declaring(mut self) -> Rabbit {
        self.declares = false;
        self
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    fn publishing_name(&self) -> String {
        format!("{}-publish", self.name)
    }
}

impl Backend for Rabbit {
    type Session = RabbitSession;

    async fn open(&self) -> Result<RabbitSession, BrokerError> {
        let consumer = Broker::connect(&self.urls, &self.name, self.topology.clone()).await?;
        let opened = async {
            if self.declares {
                consumer.declare().await?;
            }
            open_publisher(self).await
        };
        let publisher = match opened.await {
            Ok(p) => p,
            Err(e) => {
                consumer.close().await;
                return Err(e);
            }
        };
        let (state, publishing) = watch::channel(Publishing::Ready);
        let side = Arc::new(Side {
            backend: self.clone(),
            current: Mutex::new(Some(publisher)),
            state,
            poke: Notify::new(),
            stalled: AtomicBool::new(false),
        });
        let keeper = Mutex::new(Some(tokio::spawn(keep(Arc::downgrade(&side)))));
        Ok(RabbitSession {
            consumer: Arc::new(consumer),
            side,
            publishing,
            keeper,
            name: self.name.clone(),
            presence: std::sync::OnceLock::new(),
        })
    }

    fn describe(&self) -> String {
        format!("{RABBITMQ} at {}", redact_url(&self.urls))
    }

    fn name(&self) -> &'static str {
        RABBITMQ
    }
}

/// The publishing connection and its confirm channel.
struct Open {
    broker: Broker,
    publisher: Publisher,
}

async fn open_publisher(backend: &Rabbit) -> Result<Open, BrokerError> {
    let broker = Broker::connect(
        &backend.urls,
        &backend.publishing_name(),
        backend.topology.clone(),
    )
    .await?;
    match broker.publisher().await {
        Ok(publisher) => Ok(Open { broker, publisher }),
        Err(e) => {
            broker.close().await;
            Err(e)
        }
    }
}

/// The publishing side of a session.
struct Side {
    backend: Rabbit,
    /// `None` while it is being reopened.
    current: Mutex<Option<Open>>,
    state: watch::Sender<Publishing>,
    /// A publish failed: look at once rather than at the next tick.
    poke: Notify,
    /// A publish got no confirm on a connection that looks fine (not
    /// blocked, channel open): a stalled connection, to be reopened.
    stalled: AtomicBool,
}

impl Side {
    fn publisher(&self) -> Option<Publisher> {
        let current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        current.as_ref().map(|o| o.publisher.clone())
    }

    /// The publishing channel, for what needs no confirm (presence).
    fn channel(&self) -> Option<lapin::Channel> {
        self.publisher().map(|p| p.channel().clone())
    }

    /// What the publishing side is now; takes a dead one out.
    fn look(&self) -> (Publishing, Option<Open>) {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        match current.as_ref() {
            None => (Publishing::Down("reopening".to_owned()), None),
            Some(o) if !o.broker.is_connected() => (
                Publishing::Down("the publishing connection closed".to_owned()),
                current.take(),
            ),
            Some(o) if !o.publisher.is_open() => (
                Publishing::Down("the publishing channel closed".to_owned()),
                current.take(),
            ),
            Some(o)
                if o.broker.blocked().is_none() && self.stalled.swap(false, Ordering::Relaxed) =>
            {
                (
                    Publishing::Down("publishes got no confirm; reopening".to_owned()),
                    current.take(),
                )
            }
            Some(o) => match o.broker.blocked() {
                Some(reason) => (
                    Publishing::Blocked(format!("{RABBITMQ} blocks publishing: {reason}")),
                    None,
                ),
                None => (Publishing::Ready, None),
            },
        }
    }

    fn set(&self, now: Publishing) {
        self.state.send_if_modified(|was| {
            if *was == now {
                return false;
            }
            match now.reason() {
                Some(reason) => tracing::warn!(%reason, "publishing is not ready"),
                None => tracing::info!("publishing is ready again"),
            }
            *was = now.clone();
            true
        });
    }
}

/// Watches the publishing side until the session is gone; reopens it when
/// it dies.
async fn keep(side: std::sync::Weak<Side>) {
    let mut pause = REOPEN_MIN;
    loop {
        let Some(s) = side.upgrade() else { return };
        let (now, dead) = s.look();
        s.set(now.clone());
        if let Some(dead) = dead {
            // Its channel may be gone but the connection still open; closing
            // is bounded, but nothing should wait for it.
            tokio::spawn(async move {
                dead.publisher.close().await;
                dead.broker.close().await;
            });
        }
        if let Publishing::Down(_) = now {
            match open_publisher(&s.backend).await {
                Ok(open) => {
                    *s.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(open);
                    pause = REOPEN_MIN;
                    tracing::info!("publishing connection reopened");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = pause.as_millis() as u64, "cannot reopen the publishing connection");
                    drop(s);
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(REOPEN_MAX);
                    continue;
                }
            }
        }
        let blocked = s
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|o| o.broker.blocked_changes());
        let changed = async {
            match blocked {
                Some(mut b) => {
                    let _ = b.changed().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(WATCH_EVERY) => {}
            // A publish failed (a permit waits if no one was listening).
            _ = s.poke.notified() => {}
            _ = changed => {}
        }
    }
}

/// Two connections: see the module docs.
pub struct RabbitSession {
    consumer: Arc<Broker>,
    side: Arc<Side>,
    publishing: watch::Receiver<Publishing>,
    /// Taken (and stopped) by `close`.
    keeper: Mutex<Option<tokio::task::JoinHandle<()>>>,
    name: String,
    /// This worker among the others, started when first asked for.
    presence: std::sync::OnceLock<Presence>,
}

/// The shards held, and the task that keeps them in step.
struct Presence {
    me: String,
    held: watch::Receiver<Vec<u16>>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for RabbitSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RabbitSession")
            .field("consumer", &self.consumer)
            .field("publishing", &*self.publishing.borrow())
            .finish()
    }
}

impl Drop for RabbitSession {
    fn drop(&mut self) {
        if let Some(keeper) = self.keeper.lock().unwrap_or_else(|e| e.into_inner()).take() {
            keeper.abort();
        }
        if let Some(p) = self.presence.get() {
            p.task.abort();
        }
    }
}

impl Session for RabbitSession {
    type Stream = Consumer;
    type Reader = GetChannel;

    async fn declare(&self, lanes: &[String]) -> Result<(), BrokerError> {
        self.consumer.declare().await?;
        self.consumer.declare_lanes(lanes).await
    }

    async fn consume(&self, from: &Source, prefetch: u16) -> Result<Consumer, BrokerError> {
        let tag = match from {
            Source::Lane(id) => format!("{}-lane-{id}", self.name),
            Source::Shard(n) => format!("{}-shard-{n}", self.name),
            other => format!("{}-{other}", self.name),
        };
        self.consumer.consume(from, prefetch, &tag).await
    }

    async fn reader(&self, from: &Source) -> Result<GetChannel, BrokerError> {
        self.consumer.reader(from).await
    }

    async fn purge(&self, from: &Source) -> Result<usize, BrokerError> {
        let queue = self.consumer.topology().queue_of(from);
        let n = self.consumer.purge(&queue).await?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    async fn publish(&self, to: &Destination, msg: &Outgoing<'_>) -> Result<(), PublishError> {
        let Some(publisher) = self.side.publisher() else {
            let reason = self
                .publishing
                .borrow()
                .reason()
                .unwrap_or_else(|| "the publishing connection is reopening".to_owned());
            return Err(unreachable(reason));
        };
        let result = publisher.publish(to, msg).await;
        if let Err(PublishError::Unavailable(_)) = &result {
            if publisher.is_open() && publisher.blocked().is_none() {
                self.side.stalled.store(true, Ordering::Relaxed);
            }
            self.side.poke.notify_one();
        }
        result
    }

    fn publishing(&self) -> watch::Receiver<Publishing> {
        self.publishing.clone()
    }

    fn is_open(&self) -> bool {
        self.consumer.is_connected()
    }

    fn backend(&self) -> &'static str {
        RABBITMQ
    }

    fn sharded(&self) -> bool {
        true
    }

    fn shards(&self) -> Option<watch::Receiver<Vec<u16>>> {
        let p = self.presence.get_or_init(|| {
            let me = member_id(&self.name);
            let all = (0..alertpost_seam::topology::SHARDS).collect();
            let (tx, held) = watch::channel(all);
            let side = Arc::downgrade(&self.side);
            let announcer: crate::presence::Announcer =
                Arc::new(move || side.upgrade().and_then(|s| s.channel()));
            let task = tokio::spawn(crate::presence::keep(
                self.consumer.clone(),
                announcer,
                me.clone(),
                tx,
            ));
            Presence { me, held, task }
        });
        Some(p.held.clone())
    }

    async fn leave(&self) {
        if let Some(p) = self.presence.get() {
            // No more announcements after the leaving one.
            p.task.abort();
            let exchange = self.consumer.topology().members_exchange();
            crate::presence::leave(self.side.channel(), &exchange, &p.me).await;
        }
    }

    async fn close(&self) {
        Session::leave(self).await;
        // Stopped for good before the connection is taken: a keeper that
        // reopens meanwhile would leave one behind.
        let keeper = self.keeper.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(keeper) = keeper {
            keeper.abort();
            let _ = keeper.await;
        }
        let open = self
            .side
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(open) = open {
            open.publisher.close().await;
            open.broker.close().await;
        }
        self.consumer.close().await;
    }
}

impl Stream for Consumer {
    async fn next(&mut self) -> Option<Result<Inbound, BrokerError>> {
        Consumer::next(self).await
    }

    async fn cancel(&self) {
        Consumer::cancel(self).await
    }

    async fn close(self) {
        Consumer::close(self).await
    }
}

/// This worker's name among the others: its connection name, made unique
/// (workers in one process share a pid).
fn member_id(name: &str) -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{name}-{nanos:x}-{n}")
}
