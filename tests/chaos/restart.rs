//! RabbitMQ's application stopped for a few seconds, then started again,
//! in the middle of a run: every event is delivered, and the worker is
//! ready again.

use std::time::{Duration, Instant};

use alertpost_producer::Producer;
use alertpost_tests::rabbitmq::AppStopped;
use alertpost_tests::{Receiver, RunningWorker, TestPrefix};

use crate::{config, publish, settle};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_stopped_and_started_mid_run_loses_nothing() {
    let prefix = TestPrefix::new("chaos-restart");
    let receiver = Receiver::start().await;
    let mut worker = RunningWorker::start(&prefix, &config(&receiver, "")).await;
    let producer = Producer::connect(&prefix.url, &prefix.prefix, "chaos-producer")
        .await
        .expect("RabbitMQ is reachable");
    let began = Instant::now();
    let expected = publish(&producer, 3000).await;
    receiver.wait_for(300, Duration::from_secs(30)).await;
    {
        let stopped = tokio::task::spawn_blocking(AppStopped::stop)
            .await
            .expect("stopped");
        worker.wait_readyz(503, Duration::from_secs(20)).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        tokio::task::spawn_blocking(move || drop(stopped))
            .await
            .expect("started again");
    }
    worker.wait_ready(Duration::from_secs(60)).await;
    settle("stop_app, 5 s, start_app", &receiver, &expected, began).await;
    producer.close().await;
    worker.stop().await.expect("the worker stops cleanly");
}
