//! RabbitMQ, one backend of the broker seam (`alertpost-seam`): the only
//! crate that speaks AMQP. No lapin type appears in its public API.
//!
//! Layout:
//! - [`urls`]: the AMQP URLs of an `--amqp` value, tried in turn, shown
//!   without passwords;
//! - [`connection`]: one connection ([`Broker`]), `connection.blocked`
//!   watched, every wait bounded;
//! - [`declare`]: the topology as RabbitMQ queues (quorum, delivery
//!   limits, TTL tiers dead-lettering at least once), and the tools'
//!   operations on queues;
//! - [`publisher`]: publishes confirmed ([`Publisher`]), the route of each
//!   destination;
//! - [`consumer`]: consumers under a prefetch ([`Consumer`]) and
//!   `basic.get` readers ([`GetChannel`]);
//! - `settle`: acks and rejects on the channel a message came on;
//! - [`session`]: RabbitMQ as the worker's backend ([`Rabbit`]): two
//!   connections, one consuming and acking, one publishing;
//! - `presence`: the workers there are (announced on a fanout exchange),
//!   and so the shards this one holds.
//!
//! The producer library, `alertpost setup` and the tests use [`Broker`]
//! and [`Publisher`] directly; the worker and the dead-letter tools go
//! through the seam ([`Rabbit`]).

pub mod connection;
pub mod consumer;
pub mod declare;
mod presence;
pub mod publisher;
pub mod session;
mod settle;
pub mod urls;

pub use connection::{BROKER_TIMEOUT, Broker, RABBITMQ};
pub use consumer::{Consumer, GetChannel};
pub use declare::QueueStats;
pub use publisher::{Pending, Publisher};
pub use session::{Rabbit, RabbitSession};
pub use urls::{DEFAULT_AMQP_URL, amqp_urls, redact_url, rotation};
