//! The RabbitMQ backend as the worker sees it: [`Rabbit`] connects,
//! [`RabbitSession`] is one connection with its confirm channel, and each
//! [`Consumer`] a stream of one queue on a channel of its own.

use crate::rabbit::{Broker, Consumer, Publisher};
use crate::redact_url;
use crate::seam::{
    Backend, BrokerError, Destination, Inbound, Outgoing, PublishError, Session, Source, Stream,
};
use crate::topology::Topology;

/// RabbitMQ at one URL, with one topology.
#[derive(Debug, Clone)]
pub struct Rabbit {
    url: String,
    /// Names the connection in RabbitMQ and prefixes consumer tags.
    name: String,
    topology: Topology,
}

impl Rabbit {
    pub fn new(url: &str, name: &str, topology: Topology) -> Rabbit {
        Rabbit {
            url: url.to_owned(),
            name: name.to_owned(),
            topology,
        }
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }
}

impl Backend for Rabbit {
    type Session = RabbitSession;

    async fn open(&self) -> Result<RabbitSession, BrokerError> {
        let broker = Broker::connect(&self.url, &self.name, self.topology.clone()).await?;
        broker.declare().await?;
        let publisher = broker.publisher().await?;
        Ok(RabbitSession {
            broker,
            publisher,
            name: self.name.clone(),
        })
    }

    fn describe(&self) -> String {
        format!("RabbitMQ at {}", redact_url(&self.url))
    }
}

/// One connection: a confirm channel for every publish, a channel per
/// consumer.
#[derive(Debug)]
pub struct RabbitSession {
    broker: Broker,
    publisher: Publisher,
    name: String,
}

impl Session for RabbitSession {
    type Stream = Consumer;

    async fn declare(&self, lanes: &[String]) -> Result<(), BrokerError> {
        self.broker.declare().await?;
        self.broker.declare_lanes(lanes).await
    }

    async fn consume(&self, from: &Source, prefetch: u16) -> Result<Consumer, BrokerError> {
        let tag = match from {
            Source::Lane(id) => format!("{}-lane-{id}", self.name),
            other => format!("{}-{other}", self.name),
        };
        self.broker.consume(from, prefetch, &tag).await
    }

    async fn publish(&self, to: &Destination, msg: &Outgoing<'_>) -> Result<(), PublishError> {
        self.publisher.publish(to, msg).await
    }

    fn is_open(&self) -> bool {
        self.broker.is_connected() && self.publisher.is_open()
    }

    async fn close(&self) {
        self.publisher.close().await;
        self.broker.close().await;
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
