//! Publishing with publisher confirms ([`Publisher`], on a confirm channel
//! of its own; `mandatory`, so a message no queue takes comes back and is a
//! failure), and the route of each [`Destination`]: a wait goes to the
//! smallest delay tier not shorter than it, or the largest, from which it
//! comes back early and is sent round again.

use std::sync::Arc;
use std::time::Duration;

use alertpost_seam::{BrokerError, Destination, Outgoing, PublishError, Topology};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Confirmation, PublisherConfirm};

use crate::connection::{BROKER_TIMEOUT, Broker, RABBITMQ, bounded, broken};

/// Persistent messages survive a broker restart (quorum queues store all
/// messages anyway; the flag keeps intent explicit for other queue types).
const PERSISTENT: u8 = 2;

impl Broker {
    /// A publisher on its own confirm channel.
    pub async fn publisher(&self) -> Result<Publisher, BrokerError> {
        bounded("opening a confirm channel", async {
            let channel = self.channel("publish").await?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .map_err(|e| broken(format!("confirm mode: {e}")))?;
            Ok(Publisher {
                channel,
                topology: self.topology.clone(),
                blocked: self.blocked.clone(),
                timeout: BROKER_TIMEOUT,
            })
        })
        .await
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
                return Err(unreachable(format!(
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
            Ok(Confirmation::Nack(_)) => Err(PublishError::Nacked(RABBITMQ)),
            // The channel is in confirm mode, so this means it was replaced.
            Ok(Confirmation::NotRequested) => {
                Err(unreachable("the channel is not in confirm mode".to_owned()))
            }
            Err(e) => Err(unreachable(e.to_string())),
        }
    }
}

impl Publisher {
    pub(crate) fn channel(&self) -> &Channel {
        &self.channel
    }

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
            return Err(unreachable(format!("RabbitMQ blocks publishing: {reason}")));
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
            Ok(sent) => sent.map_err(|e| unreachable(e.to_string()))?,
            Err(_) => {
                return Err(unreachable(format!(
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

/// A publish not confirmed, in RabbitMQ's words (it may or may not be
/// stored).
pub(crate) fn unreachable(reason: impl std::fmt::Display) -> PublishError {
    PublishError::Unavailable(format!("RabbitMQ is unreachable: {reason}"))
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
        Destination::Shard(n) => (String::new(), t.shard_queue(*n)),
        Destination::Dead => (String::new(), t.dead_queue()),
    }
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
        assert_eq!(queue(&Destination::Shard(3)), "p.shard.3");
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
