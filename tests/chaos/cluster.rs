//! A 3-node RabbitMQ cluster beside the default node
//! (`scripts/rabbitmq-cluster.sh`); the worker and the producer are given
//! all three URLs. With the node leading the events queue stopped half way
//! through 3000 deliveries, every event is delivered: the quorum queue
//! elects a leader among the survivors and the worker follows it there.

use std::process::Command;
use std::time::{Duration, Instant};

use alertpost_producer::Producer;
use alertpost_tests::rabbitmq::rabbitmqctl;
use alertpost_tests::{Receiver, RunningWorker, TestPrefix};

use crate::{config, publish, settle};

fn script(arg: &str) -> Result<String, String> {
    let root = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scripts/rabbitmq-cluster.sh"
    );
    let out = Command::new(root)
        .arg(arg)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(format!(
            "rabbitmq-cluster.sh {arg}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The cluster, taken down with every file when dropped (a failed start
/// included).
struct Cluster {
    urls: String,
}

impl Cluster {
    fn up() -> Cluster {
        let mut cluster = Cluster {
            urls: String::new(),
        };
        script("up").expect("the cluster starts");
        cluster.urls = script("url").expect("its URLs");
        cluster
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Err(e) = script("down") {
            eprintln!("RESTORE FAILED, run `scripts/rabbitmq-cluster.sh down`: {e}");
        }
    }
}

/// The node leading `queue`, asked of a node that is up.
fn leader(queue: &str, ask: &str) -> Option<String> {
    let listed = rabbitmqctl(&[
        "-n",
        ask,
        "list_queues",
        "-q",
        "--no-table-headers",
        "name",
        "leader",
    ])
    .ok()?;
    listed.lines().find_map(|line| {
        let mut parts = line.split_whitespace();
        (parts.next() == Some(queue)).then(|| parts.next().map(str::to_owned))?
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_leading_the_events_queue_stopped_mid_run_loses_nothing() {
    let cluster = tokio::task::spawn_blocking(Cluster::up)
        .await
        .expect("the cluster is up");
    let mut prefix = TestPrefix::new("chaos-cluster");
    prefix.url = cluster.urls.clone();
    let receiver = Receiver::start().await;
    let mut worker = RunningWorker::spawn(&prefix, &cluster.urls, &config(&receiver, "")).await;
    worker.wait_ready(Duration::from_secs(30)).await;
    let producer = Producer::connect(&cluster.urls, &prefix.prefix, "chaos-producer")
        .await
        .expect("the cluster is reachable");
    let began = Instant::now();
    let expected = publish(&producer, 3000).await;
    producer.close().await;
    receiver.wait_for(1000, Duration::from_secs(60)).await;
    let events = prefix.topology.events_queue();
    let consumer = format!("{}-worker\"", prefix.prefix);
    let (stopped, on) = tokio::task::spawn_blocking(move || {
        let node = leader(&events, "r1@localhost")
            .or_else(|| leader(&events, "r2@localhost"))
            .expect("the events queue has a leader");
        // Where the worker consumes from (connecting starts at a random
        // URL): a connection's pid names its node, `<r2@localhost.…>`.
        let listed = rabbitmqctl(&[
            "-n",
            "r1@localhost",
            "list_connections",
            "-q",
            "--no-table-headers",
            "pid",
            "client_properties",
        ])
        .unwrap_or_default();
        let on = listed
            .lines()
            .find(|l| l.contains(&consumer))
            .and_then(|l| l.trim_start_matches('<').split('.').next())
            .unwrap_or("?")
            .to_owned();
        rabbitmqctl(&["-n", &node, "stop_app"]).expect("the leader's node stops");
        (node, on)
    })
    .await
    .expect("rabbitmqctl ran");
    println!(
        "stopped {stopped}, the node leading the events queue; the worker consumed through {on}"
    );
    settle(
        "3-node cluster, the leader's node stopped",
        &receiver,
        &expected,
        began,
    )
    .await;
    worker.stop().await.expect("the worker stops cleanly");
    drop(prefix);
    tokio::task::spawn_blocking(move || drop(cluster))
        .await
        .expect("the cluster is down");
}
