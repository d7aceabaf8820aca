//! The topology declared on RabbitMQ: the events exchange and queue, the
//! deliveries, the shards, the dead queue, the delay tiers and the lanes,
//! all quorum queues; and the tools' operations on queues (counts, purge, deletion).
//!
//! Work queues (events, deliveries, shards, lanes) carry a delivery limit and
//! dead-letter into `<p>.dead`, so a message that keeps crashing workers
//! stops there. Every dead-lettering queue uses `at-least-once` with
//! `reject-publish`: without both, RabbitMQ dead-letters quorum queues at
//! most once.

use std::time::Duration;

use alertpost_seam::BrokerError;
use lapin::ExchangeKind;
use lapin::options::{
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};

use crate::connection::{Broker, bounded};

/// Message counts of one queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueStats {
    /// Ready to be delivered (not counting unacked ones).
    pub messages: u32,
    pub consumers: u32,
}

impl Broker {
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
        for shard in 0..alertpost_seam::topology::SHARDS {
            queues.push((t.shard_queue(shard), shard_queue(&dead, t.delivery_limit())));
        }
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
            // Declared by workers only: on a channel of its own, and absent
            // is fine.
            let members = self.topology.members_exchange();
            let channel = self.channel("delete").await?;
            let _ = channel
                .exchange_delete(members.as_str().into(), ExchangeDeleteOptions::default())
                .await;
            let _ = channel.close(200, "deleted".into()).await;
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

/// A shard: a work queue with a single active consumer, so that one
/// worker at a time holds its alerts (the others wait as standbys, and one
/// takes over when it goes).
fn shard_queue(dead: &str, delivery_limit: u32) -> FieldTable {
    let mut args = work_queue(dead, delivery_limit);
    args.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
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
