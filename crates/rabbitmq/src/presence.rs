//! Which workers there are, and so which shards this one holds: each
//! worker announces itself every second on the fanout exchange
//! `<prefix>.members` and hears the others on an exclusive queue of its
//! own; a worker not heard from for [`GONE_AFTER`] has gone (one that
//! stops says so). The shards held follow
//! ([`alertpost_seam::topology::shards_held`]).
//!
//! Announcements go out on the publishing connection (an alarm blocks a
//! connection that publishes, and the consuming one must keep acking);
//! they are heard on the consuming one. Nothing here decides who consumes
//! a shard: RabbitMQ's single active consumer does; presence only spreads
//! the shards, so two workers that briefly disagree cost a standby or a
//! shard idle for a few seconds, never two consumers at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alertpost_seam::topology::shards_held;
use futures_util::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, ExchangeKind};
use tokio::sync::watch;

use alertpost_seam::BrokerError;
use lapin::Channel;

use crate::connection::{BROKER_TIMEOUT, Broker, broken};

/// The publishing side's channel, when it is up (announcements go there).
pub(crate) type Announcer = Arc<dyn Fn() -> Option<Channel> + Send + Sync>;

/// How often a worker announces itself.
pub const ANNOUNCE_EVERY: Duration = Duration::from_secs(1);
/// A worker not heard from this long has gone: its shards go to the
/// others (the failover bound of a worker frozen or cut off; a worker
/// killed lets its shards go at once to a standby, if one subscribed).
pub const GONE_AFTER: Duration = Duration::from_secs(5);

const LEAVING: &str = "leaving";

/// The members heard of, and when each was last.
struct Fleet {
    me: String,
    seen: HashMap<String, Instant>,
}

impl Fleet {
    fn heard(&mut self, body: &[u8], now: Instant) {
        let text = String::from_utf8_lossy(body);
        match text.split_once(' ') {
            Some((LEAVING, who)) => {
                self.seen.remove(who);
            }
            _ => {
                self.seen.insert(text.into_owned(), now);
            }
        }
    }

    fn held(&mut self, now: Instant) -> Vec<u16> {
        self.seen
            .retain(|_, at| now.duration_since(*at) < GONE_AFTER);
        let mut members: Vec<&str> = self.seen.keys().map(String::as_str).collect();
        members.push(&self.me);
        shards_held(&members, &self.me)
    }
}

/// Keeps `held` in step with the fleet until the session's side goes.
/// Starts holding every shard (alone as far as it knows): the others'
/// consumers are active where they were first, and this one stands by.
pub(crate) async fn keep(
    consumer: Arc<Broker>,
    side: Announcer,
    me: String,
    held: watch::Sender<Vec<u16>>,
) {
    let mut fleet = Fleet {
        me: me.clone(),
        seen: HashMap::new(),
    };
    loop {
        if let Err(e) = listen(&consumer, &side, &mut fleet, &held).await {
            tracing::warn!(error = %e, "cannot hear the other workers; trying again");
        }
        if !consumer.is_connected() {
            return;
        }
        tokio::time::sleep(ANNOUNCE_EVERY).await;
    }
}

/// Announces and listens until the channel breaks or the side goes.
async fn listen(
    consumer: &Broker,
    side: &Announcer,
    fleet: &mut Fleet,
    held: &watch::Sender<Vec<u16>>,
) -> Result<(), BrokerError> {
    let exchange = consumer.topology.members_exchange();
    let channel = consumer.channel("presence").await?;
    let setup = async {
        channel
            .exchange_declare(
                exchange.as_str().into(),
                ExchangeKind::Fanout,
                // Durable, not auto-delete: a publish to an exchange gone
                // would close the publishing channel, which every hand-off
                // shares.
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        let queue = channel
            .queue_declare(
                "".into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        channel
            .queue_bind(
                queue.name().clone(),
                exchange.as_str().into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        channel
            .basic_consume(
                queue.name().clone(),
                "".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await
    };
    let heard = match tokio::time::timeout(BROKER_TIMEOUT, setup).await {
        Ok(Ok(heard)) => heard,
        failed => {
            let _ = tokio::time::timeout(BROKER_TIMEOUT, channel.close(200, "done".into())).await;
            return Err(match failed {
                Ok(Err(e)) => broken(format!("presence: {e}")),
                _ => broken("presence: no answer from RabbitMQ"),
            });
        }
    };
    let ended = hear(heard, side, &exchange, fleet, held).await;
    let _ = tokio::time::timeout(BROKER_TIMEOUT, channel.close(200, "done".into())).await;
    ended
}

/// Announces every second and takes in what is heard, recomputing the
/// shards held, until the consumer breaks.
async fn hear(
    mut heard: lapin::Consumer,
    side: &Announcer,
    exchange: &str,
    fleet: &mut Fleet,
    held: &watch::Sender<Vec<u16>>,
) -> Result<(), BrokerError> {
    let mut tick = tokio::time::interval(ANNOUNCE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => announce(side(), exchange, fleet.me.as_bytes()).await,
            d = heard.next() => match d {
                Some(Ok(d)) => fleet.heard(&d.data, Instant::now()),
                Some(Err(e)) => return Err(broken(format!("presence: {e}"))),
                None => return Err(broken("presence: the consumer was cancelled")),
            },
        }
        let now = fleet.held(Instant::now());
        held.send_if_modified(|was| {
            let changed = *was != now;
            if changed {
                tracing::info!(shards = ?now, "the shards this worker holds changed");
                *was = now.clone();
            }
            changed
        });
    }
}

/// Publishes one announcement on the publishing side, if it is up; not
/// confirmed (the next one comes in a second), bounded.
async fn announce(channel: Option<Channel>, exchange: &str, body: &[u8]) {
    let Some(channel) = channel else {
        return;
    };
    let publish = channel.basic_publish(
        exchange.into(),
        "".into(),
        BasicPublishOptions::default(),
        body,
        BasicProperties::default(),
    );
    let _ = tokio::time::timeout(BROKER_TIMEOUT, publish).await;
}

/// Says this worker is leaving, so the others take its shards at once.
pub(crate) async fn leave(channel: Option<Channel>, exchange: &str, me: &str) {
    announce(channel, exchange, format!("{LEAVING} {me}").as_bytes()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fleet_is_who_was_heard_lately_and_who_did_not_leave() {
        let t0 = Instant::now();
        let mut fleet = Fleet {
            me: "me".into(),
            seen: HashMap::new(),
        };
        assert_eq!(fleet.held(t0).len(), 16, "alone: every shard");
        fleet.heard(b"other", t0);
        let half = fleet.held(t0);
        assert_eq!(half.len(), 8, "{half:?}");
        // Not heard from for GONE_AFTER: gone.
        assert_eq!(fleet.held(t0 + GONE_AFTER).len(), 16);
        fleet.heard(b"other", t0 + GONE_AFTER);
        assert_eq!(fleet.held(t0 + GONE_AFTER), half);
        fleet.heard(b"leaving other", t0 + GONE_AFTER);
        assert_eq!(fleet.held(t0 + GONE_AFTER).len(), 16);
    }
}
