//! Integrations independent of each other: a slow, black-hole or failing
//! integration does not hold up a healthy one; its backlog waits in its
//! lane, in RabbitMQ, and survives a crash; a hand-off is never forked;
//! disabling an integration dead-letters what it still had pending.

use std::collections::BTreeSet;
use std::time::Duration;

use alertpost_event::{Event, Status};
use alertpost_producer::Producer;
use alertpost_tests::bin::{WorkerProcess, alertpost};
use alertpost_tests::metrics::{scrape, value};
use alertpost_tests::{Receiver, Reply, RunningWorker, TestPrefix, eventually};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(40);

/// A healthy integration and a neighbour, with a worker window small enough
/// that messages held up by the neighbour would show at once.
fn config(receiver: &Receiver, neighbour: &str) -> String {
    format!(
        "[policy]\nallow_networks = [\"127.0.0.0/8\"]\n[worker]\nmax_inflight = 16\n\
         [[integration]]\nid = \"healthy\"\nurl = \"{}\"\n\
         [[integration]]\nid = \"neighbour\"\nurl = \"{}\"\n{neighbour}\n",
        receiver.url("/healthy"),
        receiver.url("/neighbour")
    )
}

fn events(n: usize) -> Vec<Event> {
    (0..n)
        .map(|i| Event::new("t", Status::Firing, format!("e{i}")))
        .collect()
}

async fn publish(prefix: &TestPrefix, events: Vec<Event>) -> BTreeSet<String> {
    let producer = Producer::connect(&prefix.url, &prefix.prefix, "test")
        .await
        .expect("RabbitMQ is reachable");
    let published = producer.publish_all(events).await.unwrap();
    producer.close().await;
    published.into_iter().map(|e| e.id).collect()
}

/// The event ids the receiver got on `path`.
fn ids(receiver: &Receiver, path: &str) -> BTreeSet<String> {
    receiver
        .requests_to(path)
        .iter()
        .map(|r| r.header("alertpost-event-id").unwrap().to_owned())
        .collect()
}

/// Waits until `path` got every one of `expected`.
async fn all_arrive(receiver: &Receiver, path: &str, expected: &BTreeSet<String>) {
    eventually(WAIT, &format!("every event at {path}"), || async {
        let got = ids(receiver, path);
        if &got == expected {
            Ok(())
        } else {
            Err(format!("{} of {}", got.len(), expected.len()))
        }
    })
    .await;
}

/// `n` events through a healthy integration while the neighbour answers
/// with `reply`: the healthy one gets them all while the neighbour has had
/// under a tenth of its own.
async fn healthy_finishes_beside(name: &str, settings: &str, reply: Reply) {
    let prefix = TestPrefix::new(name);
    let receiver = Receiver::start().await;
    let n = 300;
    receiver.script("/neighbour", (0..2 * n).map(|_| reply.clone()));
    let mut worker = RunningWorker::start(&prefix, &config(&receiver, settings)).await;
    let published = publish(&prefix, events(n)).await;
    all_arrive(&receiver, "/healthy", &published).await;
    let neighbour = receiver.requests_to("/neighbour").len();
    assert!(
        neighbour < n / 10,
        "the healthy integration finished its {n} events; the neighbour had {neighbour} requests"
    );
    assert_eq!(
        receiver.requests_to("/healthy").len(),
        n,
        "one request per event"
    );
    // What the neighbour could not take waits in its lane (not in the
    // worker's window): the events are all acked.
    eventually(WAIT, "the events queue drained", || async {
        match prefix.ready(&prefix.topology.events_queue()).await {
            0 => Ok(()),
            left => Err(format!("{left} events left")),
        }
    })
    .await;
    let m = scrape(worker.admin).await;
    assert!(
        value(
            &m,
            r#"alertpost_deliveries_total{integration="neighbour",outcome="deferred"}"#
        ) > 0.0
    );
    worker.stop().await.unwrap();
}

#[tokio::test]
async fn a_slow_integration_does_not_hold_up_a_healthy_one() {
    healthy_finishes_beside(
        "iso-slow",
        "concurrency = 2\ntimeout = \"10s\"\n",
        Reply::ok().delay(Duration::from_secs(3)),
    )
    .await;
}

#[tokio::test]
async fn a_black_hole_does_not_hold_up_a_healthy_one() {
    healthy_finishes_beside(
        "iso-hole",
        "concurrency = 2\ntimeout = \"1s\"\n",
        Reply::ok().delay(Duration::from_secs(3600)),
    )
    .await;
}

#[tokio::test]
async fn a_failing_integration_does_not_hold_up_a_healthy_one() {
    healthy_finishes_beside(
        "iso-fail",
        "concurrency = 2\ncircuit = { failures = 5, cooldown = \"30s\" }\n",
        Reply::status(500),
    )
    .await;
}

/// A delivery sent to its lane is handed on at once, not when the other
/// deliveries of its event are done: the healthy integration (one at a
/// time, 1 s a request) takes one of two events at once and the other
/// through its lane, while the neighbour holds both events' attempts for
/// its whole 20 s timeout. Handed on only after its sibling, the second
/// would arrive after 20 s.
#[tokio::test]
async fn a_delivery_sent_to_its_lane_does_not_wait_for_its_siblings_attempt() {
    let prefix = TestPrefix::new("iso-sibling");
    let receiver = Receiver::start().await;
    receiver.script(
        "/healthy",
        (0..2).map(|_| Reply::ok().delay(Duration::from_secs(1))),
    );
    receiver.script(
        "/neighbour",
        (0..2).map(|_| Reply::ok().delay(Duration::from_secs(3600))),
    );
    let toml = format!(
        "[policy]\nallow_networks = [\"127.0.0.0/8\"]\n\
         [[integration]]\nid = \"healthy\"\nurl = \"{}\"\nconcurrency = 1\n\
         [[integration]]\nid = \"neighbour\"\nurl = \"{}\"\ntimeout = \"20s\"\n",
        receiver.url("/healthy"),
        receiver.url("/neighbour")
    );
    let worker = RunningWorker::start(&prefix, &toml).await;
    let published = publish(&prefix, events(2)).await;
    eventually(
        Duration::from_secs(10),
        "both events at the healthy integration, well before the neighbour's timeout",
        || async {
            let got = ids(&receiver, "/healthy");
            if got == published {
                Ok(())
            } else {
                Err(format!("{} of 2", got.len()))
            }
        },
    )
    .await;
    let m = scrape(worker.admin).await;
    assert_eq!(
        value(
            &m,
            r#"alertpost_deliveries_total{integration="healthy",outcome="deferred"}"#
        ),
        1.0,
        "one of the two went through the healthy integration's lane"
    );
    assert_eq!(
        receiver.requests_to("/neighbour").len(),
        2,
        "the neighbour holds both attempts"
    );
    // Dropped: the neighbour's attempts would hold a graceful stop for
    // their timeout.
    drop(worker);
}

/// Waits until the worker at `admin` is consuming.
async fn ready(admin: std::net::SocketAddr) {
    eventually(WAIT, "the worker ready", || async {
        match alertpost_tests::bin::http_get(admin, "/readyz").await {
            Some((200, _)) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
}

#[tokio::test]
async fn a_slow_backlog_waits_in_its_lane_and_survives_kill_9() {
    let prefix = TestPrefix::new("iso-kill");
    prefix.register_lanes(["healthy", "neighbour"]);
    let receiver = Receiver::start().await;
    let n = 60;
    receiver.script(
        "/neighbour",
        (0..n).map(|_| Reply::ok().delay(Duration::from_secs(2))),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alertpost.toml");
    let toml = config(&receiver, "concurrency = 1\ntimeout = \"10s\"\n");
    std::fs::write(&path, &toml).unwrap();
    let first = WorkerProcess::start(&prefix, &path, &dir.path().join("data"));

    let published = publish(&prefix, events(n)).await;
    all_arrive(&receiver, "/healthy", &published).await;
    // The backlog is in RabbitMQ, in the neighbour's lane.
    let lane = prefix.topology.lane_queue("neighbour");
    eventually(WAIT, "a backlog in the lane", || async {
        match prefix.ready(&lane).await {
            0 => Err("the lane is empty".to_owned()),
            _ => Ok(()),
        }
    })
    .await;
    assert!(receiver.requests_to("/neighbour").len() < 5);
    first.kill_9();

    // The neighbour recovers; another worker delivers the whole backlog.
    receiver.clear("/neighbour");
    let mut second = RunningWorker::start(&prefix, &toml).await;
    all_arrive(&receiver, "/neighbour", &published).await;
    second.stop().await.unwrap();
    for queue in [
        prefix.topology.events_queue(),
        prefix.topology.deliveries_queue(),
        lane,
    ] {
        assert_eq!(prefix.ready(&queue).await, 0, "{queue} is not empty");
    }
    // At-least-once: only what was in flight at the kill may come twice
    // (the neighbour's one attempt, and the healthy delivery that went in
    // the same event, not yet acked; the second worker has a journal of
    // its own).
    assert!(receiver.requests_to("/neighbour").len() <= n + 1);
    assert!(receiver.requests_to("/healthy").len() <= n + 1);
}

/// Two integrations retrying on their own schedules: `a` through the 1 s
/// and 2 s tiers (503, 503, then 200), `b` through the 5 s tier (503, then
/// 200).
fn two_chains(receiver: &Receiver) -> String {
    receiver.script("/a", [Reply::status(503), Reply::status(503), Reply::ok()]);
    receiver.script("/b", [Reply::status(503), Reply::ok()]);
    format!(
        "[policy]\nallow_networks = [\"127.0.0.0/8\"]\n\
         [[integration]]\nid = \"a\"\nurl = \"{}\"\nretry = {{ initial = \"1s\", jitter = 0.0 }}\n\
         [[integration]]\nid = \"b\"\nurl = \"{}\"\nretry = {{ initial = \"5s\", jitter = 0.0 }}\n",
        receiver.url("/a"),
        receiver.url("/b")
    )
}

#[tokio::test]
async fn a_tier_deleted_under_the_worker_is_declared_again_and_no_chain_forks() {
    let prefix = TestPrefix::with_tiers("fork-deleted", &[1, 2, 5]);
    let receiver = Receiver::start().await;
    let mut worker = RunningWorker::start(&prefix, &two_chains(&receiver)).await;
    let broker = prefix.broker().await;
    broker
        .delete_queues(&[prefix.topology.retry_queue(Duration::from_secs(5))])
        .await
        .unwrap();
    broker.close().await;

    publish(&prefix, events(1)).await;
    receiver.wait_for(5, WAIT).await;
    receiver
        .assert_no_more(5, Duration::from_millis(1500))
        .await;
    assert_eq!(receiver.requests_to("/a").len(), 3, "one chain for a");
    assert_eq!(receiver.requests_to("/b").len(), 2, "one chain for b");
    let m = scrape(worker.admin).await;
    assert!(value(&m, "alertpost_topology_redeclared_total") >= 1.0);
    worker.stop().await.unwrap();
    for queue in prefix.topology.queues() {
        if queue != prefix.topology.dead_queue() {
            assert_eq!(prefix.ready(&queue).await, 0, "{queue} is not empty");
        }
    }
}

/// Puts a queue that refuses every message where the 5 s tier should be,
/// so a hand-off to it is nacked and keeps failing.
async fn refuse_tier(prefix: &TestPrefix) -> String {
    use lapin::options::QueueDeclareOptions;
    use lapin::types::{AMQPValue, FieldTable};
    let name = prefix.topology.retry_queue(Duration::from_secs(5));
    let conn = lapin::Connection::connect(&prefix.url, lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let channel = conn.create_channel().await.unwrap();
    let mut args = FieldTable::default();
    args.insert("x-max-length".into(), AMQPValue::LongLongInt(0));
    args.insert(
        "x-overflow".into(),
        AMQPValue::LongString("reject-publish".into()),
    );
    channel
        .queue_declare(
            name.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            args,
        )
        .await
        .unwrap();
    let _ = conn.close(200, "done".into()).await;
    name
}

#[tokio::test]
async fn a_message_back_after_a_crash_does_not_redo_what_it_handed_on() {
    let prefix = TestPrefix::with_tiers("fork-crash", &[1, 2, 5]);
    prefix.register_lanes(["a", "b"]);
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alertpost.toml");
    std::fs::write(
        &path,
        format!("{}\n{}", prefix.tiers_toml(), two_chains(&receiver)),
    )
    .unwrap();
    let data = dir.path().join("data");
    let first = WorkerProcess::start(&prefix, &path, &data);
    ready(first.admin).await;
    // Under the running worker, the 5 s tier becomes a queue that refuses
    // every message.
    let broker = prefix.broker().await;
    broker
        .delete_queues(&[prefix.topology.retry_queue(Duration::from_secs(5))])
        .await
        .unwrap();
    broker.close().await;
    let refusing = refuse_tier(&prefix).await;

    publish(&prefix, events(1)).await;
    // `a` goes its whole way (two retries through the 1 s and 2 s tiers)
    // while the hand-off of `b` to the 5 s tier is refused, again and
    // again: the event stays unacked.
    eventually(WAIT, "a delivered", || async {
        match receiver.requests_to("/a").len() {
            3 => Ok(()),
            n => Err(format!("{n} requests to a")),
        }
    })
    .await;
    assert_eq!(receiver.requests_to("/b").len(), 1);
    // The journal's segment is written within 200 ms; then the crash.
    tokio::time::sleep(Duration::from_millis(600)).await;
    first.kill_9();

    // The tier is back; a new worker on the same data dir gets the event
    // again: `a` was delivered (its journal says so), `b` carries on.
    let broker = prefix.broker().await;
    broker.delete_queues(&[refusing]).await.unwrap();
    broker.close().await;
    let second = WorkerProcess::start(&prefix, &path, &data);
    eventually(WAIT, "b delivered", || async {
        match receiver.requests_to("/b").len() {
            2 => Ok(()),
            n => Err(format!("{n} requests to b")),
        }
    })
    .await;
    receiver
        .assert_no_more(5, Duration::from_millis(1500))
        .await;
    assert_eq!(receiver.requests_to("/a").len(), 3, "a is not tried again");
    second.kill_9();
}

/// Dead letters of the prefix, as `dlq list --json` prints them.
fn dlq_list(prefix: &TestPrefix) -> Vec<Value> {
    let out = alertpost(prefix)
        .args(["dlq", "list", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn disabling_an_integration_dead_letters_what_it_had_pending_and_replay_brings_it_back() {
    let prefix = TestPrefix::new("disable");
    let receiver = Receiver::start().await;
    // The first request takes a while: the other deliveries wait in the lane.
    receiver.script("/x", [Reply::ok().delay(Duration::from_secs(3))]);
    let toml = |enabled: bool| {
        format!(
            "{}\n[policy]\nallow_networks = [\"127.0.0.0/8\"]\n[[integration]]\nid = \"x\"\nurl = \"{}\"\nenabled = {enabled}\nconcurrency = 1\n",
            prefix.tiers_toml(),
            receiver.url("/x")
        )
    };
    let mut worker = RunningWorker::start(&prefix, &toml(true)).await;
    let published = publish(&prefix, events(4)).await;
    eventually(WAIT, "three deliveries in the lane", || async {
        let m = scrape(worker.admin).await;
        let deferred = value(
            &m,
            r#"alertpost_deliveries_total{integration="x",outcome="deferred"}"#,
        );
        if deferred >= 3.0 {
            Ok(())
        } else {
            Err(format!("{deferred} deferred"))
        }
    })
    .await;
    worker.reload(&toml(false)).await;
    let dead = eventually(WAIT, "three dead letters", || async {
        let rows = dlq_list(&prefix);
        if rows.len() >= 3 {
            Ok(rows)
        } else {
            Err(format!("{} dead letters", rows.len()))
        }
    })
    .await;
    assert_eq!(dead.len(), 3, "{dead:?}");
    for row in &dead {
        assert_eq!(row["reason"], "disabled", "{row}");
        assert_eq!(row["integration"], "x", "{row}");
    }
    // The one in flight finished; the disabled integration got nothing more.
    receiver
        .assert_no_more(1, Duration::from_millis(3500))
        .await;

    worker.reload(&toml(true)).await;
    let out = alertpost(&prefix)
        .args(["dlq", "replay", "--integration", "x"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "replayed 3 dead letters"
    );
    all_arrive(&receiver, "/x", &published).await;
    worker.stop().await.unwrap();
}

#[tokio::test]
async fn an_integration_removed_by_a_reload_has_its_lane_drained_into_the_dead_queue() {
    let prefix = TestPrefix::new("removed");
    let receiver = Receiver::start().await;
    receiver.script("/x", [Reply::ok().delay(Duration::from_secs(3))]);
    let x = format!(
        "[[integration]]\nid = \"x\"\nurl = \"{}\"\nconcurrency = 1\n",
        receiver.url("/x")
    );
    let other = format!(
        "[[integration]]\nid = \"other\"\nurl = \"{}\"\nmatch = ['source=\"none\"']\n",
        receiver.url("/other")
    );
    let head = format!(
        "{}\n[policy]\nallow_networks = [\"127.0.0.0/8\"]\n",
        prefix.tiers_toml()
    );
    let mut worker = RunningWorker::start(&prefix, &format!("{head}{x}{other}")).await;
    publish(&prefix, events(3)).await;
    eventually(WAIT, "two deliveries in the lane", || async {
        let m = scrape(worker.admin).await;
        let deferred = value(
            &m,
            r#"alertpost_deliveries_total{integration="x",outcome="deferred"}"#,
        );
        if deferred >= 2.0 {
            Ok(())
        } else {
            Err(format!("{deferred} deferred"))
        }
    })
    .await;
    worker.reload(&format!("{head}{other}")).await;
    let dead = eventually(WAIT, "two dead letters", || async {
        let rows = dlq_list(&prefix);
        if rows.len() >= 2 {
            Ok(rows)
        } else {
            Err(format!("{} dead letters", rows.len()))
        }
    })
    .await;
    assert_eq!(dead.len(), 2, "{dead:?}");
    for row in &dead {
        assert_eq!(row["reason"], "unknown_integration", "{row}");
    }
    receiver
        .assert_no_more(1, Duration::from_millis(3500))
        .await;
    worker.stop().await.unwrap();
}

/// A rate-limited integration beside a free one: the free one gets every
/// event at once, the limited one every event within its bucket's bound
/// (bursts of its count, then one per period / count), none retried or
/// dead. Waiting for the bucket is not an attempt.
#[rstest::rstest]
#[case::rabbitmq(alertpost_tests::Backend::RabbitMq)]
#[case::embedded(alertpost_tests::Backend::Embedded)]
#[tokio::test]
async fn a_rate_limit_paces_its_integration_and_no_other(
    #[case] backend: alertpost_tests::Backend,
) {
    const N: usize = 60;
    const RATE: usize = 20;
    let prefix = TestPrefix::new("rate-limit");
    let receiver = Receiver::start().await;
    let toml = format!(
        // A small window: a delivery held for its bucket would hold up the
        // free integration's.
        "[policy]\nallow_networks = [\"127.0.0.0/8\"]\n[worker]\nmax_inflight = 8\n\
         [[integration]]\nid = \"limited\"\nurl = \"{}\"\nrate_limit = \"{RATE}/s\"\n\
         [[integration]]\nid = \"free\"\nurl = \"{}\"\n",
        receiver.url("/limited"),
        receiver.url("/free"),
    );
    let mut worker = RunningWorker::start_on(backend, &prefix, &toml).await;
    worker.publish_all(events(N)).await;
    receiver.wait_for(2 * N, WAIT).await;
    receiver
        .assert_no_more(2 * N, Duration::from_millis(300))
        .await;

    let times = |path: &str| {
        let mut at: Vec<_> = receiver
            .requests()
            .into_iter()
            .filter(|r| r.path == path)
            .map(|r| r.at)
            .collect();
        at.sort();
        at
    };
    let (limited, free) = (times("/limited"), times("/free"));
    assert_eq!((limited.len(), free.len()), (N, N));
    let first = limited[0];
    let period = Duration::from_secs(1) / RATE as u32;
    // The bucket starts full: the first RATE at once, then one a period.
    for (i, at) in limited.iter().enumerate().skip(RATE) {
        let earliest = period * (i - RATE) as u32;
        assert!(
            *at - first >= earliest,
            "request {i} came {:?} after the first, before {earliest:?}",
            *at - first
        );
    }
    let took = limited[N - 1] - first;
    let least = period * (N - RATE - 1) as u32;
    assert!(
        took >= least && took < least + Duration::from_secs(3),
        "the limited integration took {took:?}"
    );
    // The free one did not wait for it.
    assert!(
        free[N - 1] + Duration::from_millis(800) < limited[N - 1],
        "free ended {:?} before the limited one",
        limited[N - 1] - free[N - 1]
    );
    assert_eq!(worker.dead_count(&prefix).await, 0);
    let m = scrape(worker.admin).await;
    let attempts: f64 = m
        .iter()
        .filter(|(k, _)| {
            k.starts_with("alertpost_delivery_attempts_total{")
                && k.contains(r#"integration="limited""#)
        })
        .map(|(_, v)| v)
        .sum();
    assert_eq!(
        attempts, N as f64,
        "one attempt each: waiting for the bucket is not one"
    );
    let outcome = |o: &str| {
        value(
            &m,
            &format!(r#"alertpost_deliveries_total{{integration="limited",outcome="{o}"}}"#),
        )
    };
    assert_eq!(outcome("delivered"), N as f64);
    assert!(
        outcome("deferred") > 0.0,
        "the bucket's overflow went to the lane"
    );
    assert_eq!(outcome("retried"), 0.0);
    worker.stop().await.unwrap();
    assert_eq!(worker.waiting(&prefix).await, 0);
}
