//! Broker faults that touch only the test's own connections, so they run
//! with the rest of the suite: several URLs, a publishing connection
//! closed under the worker, a broker that accepts TCP and never answers,
//! and a message too big to keep whole in a dead letter. The faults that
//! change the broker for everyone (an alarm, a stopped app, a cluster) are
//! in the chaos suite.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use alertpost_event::{Event, Status, delivery_id};
use alertpost_producer::Producer;
use alertpost_seam::{Destination, Outgoing, Topology};
use alertpost_tests::proxy::Proxy;
use alertpost_tests::rabbitmq::close_connections;
use alertpost_tests::{Receiver, RunningWorker, TestPrefix};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

fn config(receiver: &Receiver) -> String {
    format!(
        "[policy]\nallow_networks = [\"127.0.0.0/8\"]\n[[integration]]\nid = \"hook\"\nurl = \"{}\"\nretry = {{ initial = \"1s\", max_interval = \"1s\", jitter = 0.0, max_attempts = 30 }}\ncircuit = {{ failures = 0 }}\n",
        receiver.url("/hook")
    )
}

fn event(title: &str) -> Event {
    Event::new("faults", Status::Firing, title)
}

/// A port on 127.0.0.1 where nothing listens.
fn closed_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("can bind");
    l.local_addr().expect("bound")
}

/// Accepts TCP connections and never says a word: a broker that hangs.
async fn black_hole() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("can bind");
    let addr = listener.local_addr().expect("bound");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_given_several_urls_follows_whichever_answers() {
    let prefix = TestPrefix::new("urls");
    let receiver = Receiver::start().await;
    let (a, b) = (
        Proxy::start(prefix.broker_addr()).await,
        Proxy::start(prefix.broker_addr()).await,
    );
    let dead = format!("amqp://guest:guest@{}/%2f", closed_port());
    let urls = format!("{dead},{},{}", a.amqp_url(), b.amqp_url());
    let mut worker = RunningWorker::spawn(&prefix, &urls, &config(&receiver)).await;
    worker.wait_ready(WAIT).await;
    // The producer library takes the same list.
    let producer = Producer::connect(&urls, &prefix.prefix, "test-producer")
        .await
        .expect("one of the URLs answers");
    let mut expected = BTreeSet::new();
    for (step, (down, up)) in [(None, None), (Some(&a), None), (Some(&b), Some(&a))]
        .into_iter()
        .enumerate()
    {
        if let Some(up) = up {
            up.up();
        }
        if let Some(down) = down {
            down.down();
        }
        // Whichever node it was on, it is on one that answers now.
        worker.wait_ready(WAIT).await;
        let e = loop {
            match producer.publish(event(&format!("step {step}"))).await {
                Ok(e) => break e,
                // The producer's own connection went with the proxy.
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        expected.insert(delivery_id(&e.id, "hook"));
        receiver.wait_delivered(&expected, WAIT).await;
    }
    producer.close().await;
    worker.stop().await.expect("the worker stops cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_publishing_connection_is_reopened_and_nothing_is_lost() {
    let prefix = TestPrefix::new("pubclose");
    let receiver = Receiver::start().await;
    // Every attempt fails until the closes are over: each delivery needs a
    // hand-off to a wait every second meanwhile.
    receiver.flaky("/hook", 1.0);
    let mut worker = RunningWorker::start(&prefix, &config(&receiver)).await;
    let producer = Producer::connect(&prefix.url, &prefix.prefix, "test-producer")
        .await
        .expect("RabbitMQ is reachable");
    let events = producer
        .publish_all((0..30).map(|i| event(&format!("e{i}"))).collect())
        .await
        .expect("published");
    let expected: BTreeSet<String> = events.iter().map(|e| delivery_id(&e.id, "hook")).collect();
    // Closed three times while the retries go on; each time a new one opens.
    let name = format!("{}-worker-publish", prefix.prefix);
    for _ in 0..3 {
        receiver.wait_for(receiver.count() + 30, WAIT).await;
        let closed = tokio::task::spawn_blocking({
            let name = name.clone();
            move || close_connections(&name)
        })
        .await
        .expect("rabbitmqctl ran");
        assert_eq!(closed, 1, "one publishing connection named {name}");
    }
    receiver.flaky("/hook", 0.0);
    receiver.wait_delivered(&expected, WAIT).await;
    worker.wait_ready(WAIT).await;
    let m = alertpost_tests::metrics::scrape(worker.admin).await;
    let dead: f64 = m
        .iter()
        .filter(|(k, _)| k.starts_with("alertpost_dead_letters_total"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(dead, 0.0, "no delivery went dead for it");
    assert_eq!(prefix.ready(&prefix.topology.dead_queue()).await, 0);
    producer.close().await;
    worker.stop().await.expect("the worker stops cleanly");
}

#[tokio::test]
async fn the_ingest_answers_503_within_5_s_when_rabbitmq_never_answers() {
    let hole = black_hole().await;
    let url = format!("amqp://guest:guest@{hole}/%2f");
    let addr = alertpost_tests::start_ingest(&url, Topology::new("t-hole").unwrap()).await;
    let client = reqwest::Client::new();
    for _ in 0..2 {
        let began = Instant::now();
        let r = client
            .post(format!("http://{addr}/v1/events"))
            .body(r#"{"source":"s","status":"firing","title":"t"}"#)
            .timeout(Duration::from_secs(20))
            .send()
            .await
            .expect("an answer, not a hang");
        assert_eq!(r.status().as_u16(), 503);
        assert!(
            began.elapsed() < Duration::from_secs(5),
            "{:?}",
            began.elapsed()
        );
        let began = Instant::now();
        let ready = alertpost_tests::bin::http_get(addr, "/readyz").await;
        assert!(matches!(ready, Some((503, _))), "{ready:?}");
        assert!(
            began.elapsed() < Duration::from_secs(5),
            "{:?}",
            began.elapsed()
        );
    }
    // With the hole first and a real node second, answers stay within 5 s
    // and, once the hole's attempt has run out, the second is used.
    let prefix = TestPrefix::new("hole-then-real");
    let urls = format!("{url},{}", prefix.url);
    let second = alertpost_tests::start_ingest(&urls, prefix.topology.clone()).await;
    let deadline = Instant::now() + WAIT;
    loop {
        let began = Instant::now();
        let r = client
            .post(format!("http://{second}/v1/events"))
            .body(r#"{"source":"s","status":"firing","title":"t"}"#)
            .timeout(Duration::from_secs(20))
            .send()
            .await
            .expect("an answer, not a hang");
        assert!(
            began.elapsed() < Duration::from_secs(5),
            "{:?}",
            began.elapsed()
        );
        if r.status().as_u16() == 202 {
            break;
        }
        assert_eq!(r.status().as_u16(), 503);
        assert!(Instant::now() < deadline, "never reached the second node");
    }
    // The producer library bounds its waits the same way.
    let producer = Producer::lazy(&url, Topology::new("t-hole").unwrap(), "test")
        .with_timeout(Duration::from_secs(1));
    let began = Instant::now();
    let e = producer.publish(event("lost in a hole")).await;
    assert!(e.is_err(), "never a success");
    assert!(
        began.elapsed() < Duration::from_secs(3),
        "{:?}",
        began.elapsed()
    );
}

#[tokio::test]
async fn a_huge_undecodable_message_is_dead_lettered_in_its_first_64_kib() {
    use sha2::Digest;

    let prefix = TestPrefix::new("huge");
    let receiver = Receiver::start().await;
    let mut worker = RunningWorker::start(&prefix, &config(&receiver)).await;
    let raw: Vec<u8> = (0..4 * 1024 * 1024u32)
        .map(|i| (i % 253) as u8 | 0x80)
        .collect();
    let broker = prefix.broker().await;
    let publisher = broker.publisher().await.unwrap();
    publisher
        .publish(
            &Destination::Events {
                routing_key: "x.y.z".into(),
            },
            &Outgoing {
                body: &raw,
                kind: "alertpost.event.v1",
                message_id: "huge-1",
            },
        )
        .await
        .unwrap();
    let deadline = Instant::now() + WAIT;
    let letter = loop {
        let mut reader = broker.reader(&alertpost_seam::Source::Dead).await.unwrap();
        if let Some(msg) = alertpost_seam::Reader::next(&mut reader).await.unwrap() {
            msg.ack().await.unwrap();
            break msg.body;
        }
        alertpost_seam::Reader::close(reader).await;
        assert!(Instant::now() < deadline, "no dead letter");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        letter.len() < 128 * 1024,
        "a dead letter of {} bytes",
        letter.len()
    );
    let v: Value = serde_json::from_slice(&letter).unwrap();
    assert_eq!(v["reason"], "undecodable");
    assert_eq!(v["raw_len"], raw.len());
    assert_eq!(v["raw_truncated"], true);
    let hex: String = sha2::Sha256::digest(&raw)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(v["raw_sha256"], hex);
    assert_eq!(receiver.count(), 0);
    broker.close().await;
    worker.stop().await.expect("the worker stops cleanly");
}

#[tokio::test]
async fn the_commands_take_a_list_of_urls_and_skip_a_dead_node() {
    use alertpost_tests::bin::alertpost;

    let prefix = TestPrefix::new("cli-urls");
    let dead = format!("amqp://guest:guest@{}/%2f", closed_port());
    let urls = format!("{dead},{}", prefix.url);
    let run = |args: &[&str]| {
        let out = alertpost(&prefix)
            .env("ALERTPOST_AMQP_URL", &urls)
            .args(args)
            .output()
            .expect("alertpost runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, _, err) = run(&["setup"]);
    assert_eq!(code, Some(0), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("one.json");
    std::fs::write(
        &file,
        r#"{"source":"a","status":"firing","title":"via a list"}"#,
    )
    .unwrap();
    let (code, out, err) = run(&["publish", file.to_str().unwrap()]);
    assert_eq!((code, out.trim()), (Some(0), "published 1 events"), "{err}");
    assert_eq!(prefix.ready(&prefix.topology.events_queue()).await, 1);
    let (code, _, err) = run(&["dlq", "list"]);
    assert_eq!(code, Some(0), "{err}");
    // Every URL dead: one error naming each, passwords hidden.
    let all_dead = format!("{dead},amqp://guest:secret@{}/%2f", closed_port());
    let out = alertpost(&prefix)
        .env("ALERTPOST_AMQP_URL", &all_dead)
        .args(["publish", file.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.matches("guest:***@127.0.0.1").count() >= 2, "{err}");
    assert!(!err.contains("secret"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_publishing_connection_cannot_reopen_the_worker_pauses_and_says_so() {
    let prefix = TestPrefix::new("pubdown");
    let receiver = Receiver::start().await;
    let proxy = Proxy::start(prefix.broker_addr()).await;
    let mut worker = RunningWorker::spawn(&prefix, &proxy.amqp_url(), &config(&receiver)).await;
    worker.wait_ready(WAIT).await;
    let producer = Producer::connect(&prefix.url, &prefix.prefix, "test-producer")
        .await
        .expect("RabbitMQ is reachable");
    let first = producer.publish(event("before")).await.unwrap();
    let mut expected = BTreeSet::from([delivery_id(&first.id, "hook")]);
    receiver.wait_delivered(&expected, WAIT).await;
    // The consuming connection stays; the publishing one is closed and
    // cannot come back while the proxy refuses new connections.
    proxy.refuse_new();
    let name = format!("{}-worker-publish", prefix.prefix);
    let closed = tokio::task::spawn_blocking(move || close_connections(&name))
        .await
        .unwrap();
    assert_eq!(closed, 1);
    alertpost_tests::eventually(WAIT, "/readyz to say it cannot publish", || async {
        match alertpost_tests::bin::http_get(worker.admin, "/readyz").await {
            Some((503, body)) if body.contains("cannot publish") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    // It handles no new message meanwhile (those RabbitMQ pushes within the
    // prefetch wait unacked, and go back if the worker dies).
    let waiting = producer
        .publish_all((0..5).map(|i| event(&format!("during {i}"))).collect())
        .await
        .unwrap();
    receiver.assert_no_more(1, Duration::from_secs(1)).await;
    // Back: reopened, ready, and the waiting events delivered.
    proxy.up();
    worker.wait_ready(WAIT).await;
    expected.extend(waiting.iter().map(|e| delivery_id(&e.id, "hook")));
    receiver.wait_delivered(&expected, WAIT).await;
    producer.close().await;
    worker.stop().await.expect("the worker stops cleanly");
}
