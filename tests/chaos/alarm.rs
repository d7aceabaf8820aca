//! A memory alarm in the middle of a run: RabbitMQ blocks every publishing
//! connection. The ingest answers 503 within 5 s (never hangs, never 202),
//! the worker reports it (`/readyz` 503 with the reason, the gauge), stops
//! taking messages, keeps its hand-offs waiting rather than requeueing
//! them, and after the alarm everything is delivered.

use std::time::{Duration, Instant};

use alertpost_producer::Producer;
use alertpost_tests::metrics::{scrape, value};
use alertpost_tests::rabbitmq::MemoryAlarm;
use alertpost_tests::{Receiver, Reply, RunningWorker, TestPrefix, eventually};

use crate::{config, ingest, post, publish, settle};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_alarm_blocks_publishing_and_nothing_hangs_or_is_lost() {
    let prefix = TestPrefix::new("chaos-alarm");
    prefix.register_lanes(["hook"]);
    let receiver = Receiver::start().await;
    // The first answers fail: their deliveries need hand-offs (retries),
    // which the alarm blocks. They come 2 s late, so their hand-offs are
    // tried once the worker knows it is blocked (the alarm lasts at least
    // 4 s after that): found, answers at once could have their hand-offs
    // published before the block was known, wait for their confirms and
    // leave nothing to count.
    receiver.script(
        "/hook",
        (0..8).map(|_| Reply::status(503).delay(Duration::from_secs(2))),
    );
    let producer = Producer::connect(&prefix.url, &prefix.prefix, "chaos-producer")
        .await
        .expect("RabbitMQ is reachable");
    let ingest = ingest(&prefix.url, prefix.topology.clone()).await;
    let one = r#"{"source":"chaos","status":"firing","title":"via the ingest"}"#;
    let (status, _, _) = post(ingest, "/v1/events", one.to_owned()).await;
    assert_eq!(status, 202);
    let began = Instant::now();
    // Waiting for the worker, which starts under the alarm.
    let mut expected = publish(&producer, 2000).await;

    let alarm = tokio::task::spawn_blocking(MemoryAlarm::raise)
        .await
        .expect("the alarm is raised");
    // The ingest: 503 within 5 s, every time, never 202.
    for _ in 0..3 {
        let (status, body, took) = post(ingest, "/v1/events", one.to_owned()).await;
        assert_eq!(status, 503, "{body}");
        assert!(took < Duration::from_secs(5), "answered after {took:?}");
    }
    let ready = alertpost_tests::bin::http_get(ingest, "/readyz").await;
    assert!(
        matches!(&ready, Some((503, body)) if body.contains("blocks publishing")),
        "{ready:?}"
    );
    // The worker delivers what needs no hand-off; the first retry is
    // blocked, and from then on it says why it is not ready and counts it.
    let mut worker = RunningWorker::spawn(&prefix, &prefix.url, &config(&receiver, "")).await;
    eventually(
        Duration::from_secs(30),
        "the worker reports the alarm",
        || async {
            let got = alertpost_tests::bin::http_get(worker.admin, "/readyz").await;
            match got {
                Some((503, body)) if body.contains("blocks publishing") => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    let m = scrape(worker.admin).await;
    assert_eq!(value(&m, "alertpost_broker_blocked"), 1.0);
    // It takes nothing new meanwhile: the events queue stops draining
    // (once the messages in flight are done).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let waiting = prefix.ready(&prefix.topology.events_queue()).await;
    assert!(waiting > 0, "the test needs events left in the queue");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let still = prefix.ready(&prefix.topology.events_queue()).await;
    assert_eq!(still, waiting, "took messages while blocked");
    drop(alarm);

    worker.wait_ready(Duration::from_secs(30)).await;
    let (status, body, _) = post(ingest, "/v1/events", one.to_owned()).await;
    assert_eq!(status, 202, "{body}");
    expected.extend(publish(&producer, 10).await);
    let t = settle("memory alarm", &receiver, &expected, began).await;
    assert_eq!(t.delivered, expected.len());
    let m = scrape(worker.admin).await;
    assert_eq!(value(&m, "alertpost_broker_blocked"), 0.0);
    assert_eq!(
        value(&m, "alertpost_messages_requeued_total"),
        0.0,
        "hand-offs waited for the alarm to end instead of requeueing"
    );
    assert!(value(&m, "alertpost_handoff_failures_total") >= 1.0);
    producer.close().await;
    worker.stop().await.expect("the worker stops cleanly");
}
