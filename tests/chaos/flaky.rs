//! Half of all requests answered 500 at random: every event is delivered,
//! through retries, and none is dead-lettered.

use std::time::Instant;

use alertpost_producer::Producer;
use alertpost_tests::metrics::{scrape, value};
use alertpost_tests::{Receiver, RunningWorker, TestPrefix};

use crate::{publish, settle};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_the_requests_failing_at_random_loses_nothing() {
    let prefix = TestPrefix::with_tiers("chaos-flaky", &[1, 2]);
    let receiver = Receiver::start().await;
    receiver.flaky("/hook", 0.5);
    // No circuit in the way: this is about retries, not about backing off.
    let toml = format!(
        "delay_tiers = [\"1s\", \"2s\"]\n[policy]\nallow_networks = [\"127.0.0.0/8\"]\n[[integration]]\nid = \"hook\"\nurl = \"{}\"\nconcurrency = 64\nretry = {{ initial = \"1s\", max_interval = \"1s\", jitter = 0.0, max_attempts = 30 }}\ncircuit = {{ failures = 0 }}\n",
        receiver.url("/hook")
    );
    let mut worker = RunningWorker::start(&prefix, &toml).await;
    let producer = Producer::connect(&prefix.url, &prefix.prefix, "chaos-producer")
        .await
        .expect("RabbitMQ is reachable");
    let began = Instant::now();
    let expected = publish(&producer, 2000).await;
    settle("half the requests 500", &receiver, &expected, began).await;
    let m = scrape(worker.admin).await;
    assert!(
        value(
            &m,
            "alertpost_deliveries_total{integration=\"hook\",outcome=\"retried\"}"
        ) > 500.0
    );
    assert_eq!(
        prefix.ready(&prefix.topology.dead_queue()).await,
        0,
        "nothing dead-lettered"
    );
    producer.close().await;
    worker.stop().await.expect("the worker stops cleanly");
}
