//! The worker over the embedded backend (the store's durable queue, no
//! RabbitMQ): the same deliveries, retries through the due-time index,
//! lanes, and what was not acked comes back after a restart. The first
//! piece of `alertpost run` (issue 14); the shared suites do not run
//! against it yet.

use std::collections::BTreeSet;
use std::time::Duration;

use alertpost_embedded::Embedded;
use alertpost_event::{EVENT_SCHEMA, Event, Status, delivery_id};
use alertpost_seam::{Destination, Outgoing, Topology};
use alertpost_store::queue::DurableQueue;
use alertpost_tests::{Receiver, Reply};
use alertpost_worker::WorkerOptions;
use time::OffsetDateTime;

const WAIT: Duration = Duration::from_secs(30);

fn config(receiver: &Receiver) -> alertpost_config::Config {
    let toml = format!(
        "[policy]\nallow_networks = [\"127.0.0.0/8\"]\n[[integration]]\nid = \"hook\"\nurl = \"{}\"\nconcurrency = 2\nretry = {{ initial = \"1s\", jitter = 0.0 }}\n",
        receiver.url("/hook")
    );
    alertpost_config::parse(&toml, "embedded.toml", &|_| None).unwrap_or_else(|e| panic!("{e}"))
}

async fn publish(backend: &Embedded, title: &str) -> String {
    let mut event = Event::new("embedded", Status::Firing, title);
    event
        .prepare(OffsetDateTime::now_utc())
        .expect("a valid event");
    let body = event.to_json();
    backend
        .publish(
            &Destination::Events {
                routing_key: event.routing_key(),
            },
            &Outgoing {
                body: &body,
                kind: EVENT_SCHEMA,
                message_id: &event.id,
            },
        )
        .await
        .expect("stored");
    delivery_id(&event.id, "hook")
}

/// A worker over `backend` until the returned sender is dropped or fired.
fn start(
    backend: Embedded,
    receiver: &Receiver,
    data: &std::path::Path,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), alertpost_worker::WorkerError>>,
) {
    let store = alertpost_store::Store::open(data).expect("a store");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let options = WorkerOptions {
        config: config(receiver),
        reload: None,
        store,
    };
    let worker =
        alertpost_worker::Worker::new(backend, options).expect("the config makes a runtime");
    let handle = tokio::spawn(worker.run(async move {
        let _ = rx.await;
    }));
    (tx, handle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_delivers_retries_and_resumes_over_the_embedded_queue() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await;
    // The first answer fails: a retry through the due-time index.
    receiver.script("/hook", [Reply::status(503)]);
    let topology = Topology::new("embedded").unwrap();
    let queue = DurableQueue::open(
        &dir.path().join("queue"),
        &topology.dead_queue(),
        5,
        8 << 20,
    )
    .expect("the queue opens");
    let backend = Embedded::new(queue.clone(), topology.clone());
    let (stop, worker) = start(backend.clone(), &receiver, &dir.path().join("store"));
    // Concurrency 2 and 30 events at once: most go through the lane.
    let mut expected = BTreeSet::new();
    for i in 0..30 {
        expected.insert(publish(&backend, &format!("e{i}")).await);
    }
    receiver.wait_delivered(&expected, WAIT).await;
    let retried = receiver
        .accepted()
        .iter()
        .any(|r| r.header("alertpost-attempt") == Some("2"));
    assert!(retried, "the 503 was retried");
    let _ = stop.send(());
    worker.await.unwrap().unwrap();
    assert_eq!(queue.ready_len(&topology.events_queue()), 0);
    assert_eq!(queue.ready_len(&topology.lane_queue("hook")), 0);
    assert_eq!(queue.later_len(), 0);
    drop((backend, queue));

    // Stored while no worker runs, then a new process on the same queue.
    let queue = DurableQueue::open(
        &dir.path().join("queue"),
        &topology.dead_queue(),
        5,
        8 << 20,
    )
    .expect("the queue reopens");
    let backend = Embedded::new(queue.clone(), topology.clone());
    let later = publish(&backend, "while stopped").await;
    let (stop, worker) = start(backend, &receiver, &dir.path().join("store"));
    expected.insert(later);
    receiver.wait_delivered(&expected, WAIT).await;
    let _ = stop.send(());
    worker.await.unwrap().unwrap();
}
