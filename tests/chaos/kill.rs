//! A worker killed with SIGKILL twice during 3000 deliveries, restarted on
//! its data directory each time: every event is delivered.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use alertpost_producer::Producer;
use alertpost_tests::bin::alertpost;
use alertpost_tests::{Receiver, TestPrefix};

use crate::{config, publish, settle};

fn start(prefix: &TestPrefix, config: &std::path::Path, data: &std::path::Path) -> Child {
    alertpost(prefix)
        .arg("worker")
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(data)
        .args(["--admin-addr", "127.0.0.1:0"])
        .stderr(Stdio::null())
        .spawn()
        .expect("the worker starts")
}

/// Kills the child when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_twice_loses_nothing() {
    let prefix = TestPrefix::new("chaos-kill");
    prefix.register_lanes(["hook"]);
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("worker.toml");
    std::fs::write(
        &path,
        format!("{}\n{}", prefix.tiers_toml(), config(&receiver, "")),
    )
    .expect("the config is written");
    let data = dir.path().join("data");
    let producer = Producer::connect(&prefix.url, &prefix.prefix, "chaos-producer")
        .await
        .expect("RabbitMQ is reachable");
    let began = Instant::now();
    let mut worker = Killed(start(&prefix, &path, &data));
    let expected = publish(&producer, 3000).await;
    for at in [600, 1800] {
        receiver.wait_for(at, Duration::from_secs(60)).await;
        // SIGKILL: no drain, no flush; the lock on the data dir goes with it.
        worker.0.kill().expect("killed");
        worker.0.wait().expect("reaped");
        worker = Killed(start(&prefix, &path, &data));
    }
    settle("kill -9 twice", &receiver, &expected, began).await;
    producer.close().await;
    drop(worker);
}
