//! Which messages go to their alert's shard rather than being handled
//! where they were found (pure), and the [`Forward`] they become.
//!
//! On a sharded backend every message of an alert with a key is handled
//! by the one worker that holds its shard, so that per-key order
//! ([`crate::order`]) sees all of them. Producers publish such events to
//! their shard; what reaches a stream every worker reads is forwarded
//! there: an event from a producer that publishes to the events exchange
//! (an older alertpost, a direct AMQP client), and a job back from a wait,
//! a lane or a replay (waits go through delay tiers shared by all shards).

use alertpost_config::Order;
use alertpost_event::job::{DeliveryJob, JOB_SCHEMA};
use alertpost_event::{AlertKey, EVENT_SCHEMA, Event};
use alertpost_seam::Source;
use alertpost_seam::topology::shard_of;
use bytes::Bytes;

use crate::runtime::Runtime;
use crate::step::Forward;

/// The shard an event found on `source` goes to, if it is not handled
/// here: it has a key, and `source` is not its shard.
pub(crate) fn of_event(sharded: bool, source: &Source, event: &Event) -> Option<u16> {
    elsewhere(sharded, source, event)
}

/// The shard a job found on `source` goes to, if it is not handled here:
/// as an event, and only when its integration keeps order (a job of an
/// integration with `order = "none"`, or of one gone, is handled where it
/// is found).
pub(crate) fn of_job(
    sharded: bool,
    source: &Source,
    job: &DeliveryJob,
    runtime: &Runtime,
) -> Option<u16> {
    let ordered = runtime
        .target(&job.integration)
        .is_some_and(|t| t.integration.order != Order::None);
    elsewhere(sharded, source, &job.event).filter(|_| ordered)
}

fn elsewhere(sharded: bool, source: &Source, event: &Event) -> Option<u16> {
    match (sharded, source, event.key()) {
        (true, Source::Events | Source::Deliveries | Source::Lane(_), AlertKey::Dedup(key)) => {
            Some(shard_of(key))
        }
        _ => None,
    }
}

/// An event to its shard, as `raw` (the message's own bytes, when they
/// encode it as it is) or encoded: with its stamp, so its position stays.
pub(crate) fn event(event: &Event, raw: Option<Bytes>, shard: u16) -> Forward {
    Forward {
        shard,
        body: raw.unwrap_or_else(|| Bytes::from(event.to_json())),
        kind: EVENT_SCHEMA,
        id: event.id.clone(),
        hop: None,
    }
}

/// A job to its shard, one hop on.
pub(crate) fn job(mut job: DeliveryJob, shard: u16) -> Forward {
    job.hop += 1;
    Forward {
        shard,
        body: Bytes::from(job.to_json()),
        kind: JOB_SCHEMA,
        hop: Some(job.hop),
        id: job.delivery_id,
    }
}

#[cfg(test)]
mod tests {
    use alertpost_event::Status;

    use super::*;

    fn keyed(key: Option<&str>) -> Event {
        let mut e = Event::new("test", Status::Firing, "t");
        e.dedup_key = key.map(str::to_owned);
        e
    }

    fn job(integration: &str, key: Option<&str>) -> DeliveryJob {
        let now = time::OffsetDateTime::now_utc();
        DeliveryJob {
            delivery_id: format!("dlv-{integration}"),
            integration: integration.to_owned(),
            attempts: 1,
            first_attempt_at: now,
            not_before: now,
            hop: 1,
            replayed: None,
            history: Vec::new(),
            event: keyed(key),
        }
    }

    /// A job goes on to its shard only when its integration keeps order;
    /// one of `order = "none"`, or of an integration gone, is handled
    /// where it is found (dead-lettered there if gone).
    #[test]
    fn a_job_goes_to_its_shard_only_for_an_integration_that_keeps_order() {
        let toml = "[policy]\nallow_networks = [\"127.0.0.0/8\"]\n\
            [[integration]]\nid = \"latest\"\nurl = \"http://127.0.0.1:9/\"\n\
            [[integration]]\nid = \"none\"\nurl = \"http://127.0.0.1:9/\"\norder = \"none\"\n";
        let config = alertpost_config::parse(toml, "t.toml", &|_| None).unwrap();
        let metrics = alertpost_metrics::WorkerMetrics::new("RabbitMQ");
        let runtime = Runtime::new(config, &metrics, &[], None).unwrap();
        let n = shard_of("disk-full");
        // (integration, key, found on, goes to)
        let cases = [
            ("latest", Some("disk-full"), Source::Deliveries, Some(n)),
            (
                "latest",
                Some("disk-full"),
                Source::Lane("latest".into()),
                Some(n),
            ),
            ("latest", Some("disk-full"), Source::Shard(n), None),
            ("latest", None, Source::Deliveries, None),
            ("none", Some("disk-full"), Source::Deliveries, None),
            ("gone", Some("disk-full"), Source::Deliveries, None),
        ];
        for (integration, key, source, expected) in cases {
            assert_eq!(
                of_job(true, &source, &job(integration, key), &runtime),
                expected,
                "{integration} {key:?} {source}"
            );
        }
        assert_eq!(
            of_job(
                false,
                &Source::Deliveries,
                &job("latest", Some("k")),
                &runtime
            ),
            None
        );
        // Forwarded one hop on, journaled at that hop.
        let f = super::job(job("latest", Some("disk-full")), n);
        assert_eq!((f.shard, f.hop, f.kind), (n, Some(2), JOB_SCHEMA));
    }

    #[test]
    fn an_alert_with_a_key_goes_to_its_shard_from_any_stream_but_its_own() {
        let k = keyed(Some("disk-full"));
        let n = shard_of("disk-full");
        // (sharded backend, found on, event, goes to)
        let cases = [
            (true, Source::Events, &k, Some(n)),
            (true, Source::Deliveries, &k, Some(n)),
            (true, Source::Lane("hook".into()), &k, Some(n)),
            (true, Source::Shard(n), &k, None),
            // Without a key: anywhere.
            (true, Source::Events, &keyed(None), None),
            // The embedded queue: one process holds every key.
            (false, Source::Events, &k, None),
            (false, Source::Deliveries, &k, None),
        ];
        for (sharded, source, event, expected) in cases {
            assert_eq!(
                of_event(sharded, &source, event),
                expected,
                "{sharded} {source} {:?}",
                event.dedup_key
            );
        }
    }
}
