//! What the rest of alertpost sees of a broker.
//!
//! The contract: an [`Inbound`] message stays unacknowledged until its
//! handler calls [`Inbound::ack`] (done with it), [`Inbound::requeue`] (give
//! it to a worker again) or [`Inbound::reject`] (the broker dead-letters it).
//! A handler that does none of these leaves the message to the broker, which
//! hands it out again when this connection closes. A publish returns only
//! once the broker has confirmed it; an unroutable message is an error, not
//! a success.

use std::time::Duration;

/// A message taken from a queue.
#[derive(Debug)]
pub struct Inbound {
    pub body: bytes::Bytes,
    /// The AMQP `type` property: the schema of the body, when the publisher
    /// set one (`alertpost.event.v1`, `alertpost.job.v1`...).
    pub kind: Option<String>,
    pub message_id: Option<String>,
    /// True when the broker delivered this message before (to this or another
    /// consumer) without an ack.
    pub redelivered: bool,
    /// The queue it came from.
    pub queue: String,
    pub(crate) acker: Acker,
}

/// Settles one inbound message. Each method consumes the message's one
/// chance: a second call is a no-op reported as an error.
#[derive(Debug)]
pub struct Acker(pub(crate) lapin::Acker);

impl Inbound {
    /// Done with the message: the broker forgets it.
    pub async fn ack(&self) -> Result<(), BrokerError> {
        self.acker.ack().await
    }

    /// Give the message back to be delivered again (to any worker).
    pub async fn requeue(&self) -> Result<(), BrokerError> {
        self.acker.reject(true).await
    }

    /// Refuse the message: the queue's dead-letter settings apply.
    pub async fn reject(&self) -> Result<(), BrokerError> {
        self.acker.reject(false).await
    }
}

/// Where a publish goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// The events exchange, with this routing key.
    Events { routing_key: String },
    /// The queue delivery jobs come back from.
    Deliveries,
    /// The delay queue of this tier (one of the topology's tiers).
    Retry(Duration),
    /// The dead-letter queue.
    Dead,
}

/// A message to publish. Always persistent.
#[derive(Debug, Clone)]
pub struct Outgoing<'a> {
    pub body: &'a [u8],
    /// The AMQP `type`: the body's schema.
    pub kind: &'static str,
    /// The AMQP `message_id`: the event id, delivery id or dead-letter id.
    pub message_id: &'a str,
}

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot connect to RabbitMQ at {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("cannot declare {what}: {reason}")]
    Declare { what: String, reason: String },
    #[error("RabbitMQ connection lost: {0}")]
    Connection(String),
}

#[derive(Debug, thiserror::Error)]
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
