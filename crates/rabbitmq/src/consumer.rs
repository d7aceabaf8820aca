//! Taking messages from RabbitMQ: a consumer with manual acks under a
//! per-consumer prefetch ([`Consumer`]; quorum queues have no global QoS),
//! and a queue read message by message with `basic.get` for inspection
//! ([`GetChannel`]), each on a channel of its own.

use alertpost_seam::{BrokerError, Inbound, Reader, Received, Source};
use futures_util::StreamExt;
use lapin::Channel;
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicGetOptions, BasicQosOptions};
use lapin::types::FieldTable;

use crate::connection::{BROKER_TIMEOUT, Broker, bounded, broken};
use crate::settle::Acker;

impl Broker {
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
                .map_err(|e| broken(format!("qos on {queue}: {e}")))?;
            let inner = channel
                .basic_consume(
                    queue.as_str().into(),
                    tag.into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(|e| broken(format!("consume {queue}: {e}")))?;
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
                .map_err(|e| broken(format!("get from {queue}: {e}")))
        })
        .await?;
        Ok(msg.map(|m| inbound(m.delivery, &self.channel, &self.source, queue)))
    }

    async fn close(self) {
        let _ = tokio::time::timeout(BROKER_TIMEOUT, self.channel.close(200, "done".into())).await;
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
                .map_err(|e| broken(format!("connection lost: {e}"))),
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
        queue: queue.to_owned(),
        body: bytes::Bytes::from(d.data),
    };
    Inbound::new(parts, Acker(d.acker, channel.status().clone()))
}
