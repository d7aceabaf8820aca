//! Deliveries that survive failures of the endpoint, the worker and time:
//! delay-tier retries, dead letters, the journal, `dlq`, `attempts`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use alertpost_event::job::JOB_SCHEMA;
use alertpost_event::{Event, Status, delivery_id};
use alertpost_seam::{Destination, Outgoing, Reader, Source};
use alertpost_tests::bin::{alertpost, http_get};
use alertpost_tests::{Backend, Receiver, Reply, RunningWorker, TestPrefix};
use rstest::rstest;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(40);

fn config(receiver: &Receiver, retry: &str) -> String {
    format!(
        "[policy]\nallow_networks = [\"127.0.0.0/8\"]\n[[integration]]\nid = \"hook\"\nurl = \"{}\"\ntimeout = \"3s\"\nretry = {{ {retry} }}\n",
        receiver.url("/hook")
    )
}

fn event(title: &str) -> Event {
    Event::new("test", Status::Firing, title)
}

/// Nothing waits in the worker's backend (but for the dead letters):
/// nothing is lost, nothing still pending.
async fn all_empty(worker: &RunningWorker, prefix: &TestPrefix) {
    assert_eq!(worker.waiting(prefix).await, 0, "something still waits");
}

/// All dead letters, taken off the dead queue.
async fn dead_letters(worker: &RunningWorker, prefix: &TestPrefix) -> Vec<Value> {
    worker
        .take_dead(prefix)
        .await
        .iter()
        .map(|m| serde_json::from_slice(&m.body).expect("a dead letter is JSON"))
        .collect()
}

/// [`all_empty`] for a test of RabbitMQ alone: every queue of the prefix.
async fn rabbit_all_empty(prefix: &TestPrefix) {
    for queue in prefix.topology.queues() {
        if queue == prefix.topology.dead_queue() {
            continue;
        }
        assert_eq!(prefix.ready(&queue).await, 0, "{queue} is not empty");
    }
}

/// [`dead_letters`] for a test of RabbitMQ alone.
async fn rabbit_dead_letters(prefix: &TestPrefix) -> Vec<Value> {
    let broker = prefix.broker().await;
    let mut reader = broker.reader(&Source::Dead).await.unwrap();
    let mut out = Vec::new();
    while let Some(msg) = reader.next().await.unwrap() {
        out.push(serde_json::from_slice(&msg.body).unwrap());
        msg.ack().await.unwrap();
    }
    reader.close().await;
    broker.close().await;
    out
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

#[rstest]
#[case::rabbitmq(Backend::RabbitMq)]
#[case::embedded(Backend::Embedded)]
#[tokio::test]
async fn a_503_503_200_is_delivered_on_the_third_try_under_one_webhook_id(
    #[case] backend: Backend,
) {
    let prefix = TestPrefix::with_tiers("retry-3", &[1, 2, 4]);
    let receiver = Receiver::start().await;
    receiver.script(
        "/hook",
        [
            Reply::status(503),
            Reply::status(503)
                .body("busy")
                .header("set-cookie", "session=s3cr3t-cookie")
                .header("x-request-id", "r-2"),
            Reply::ok(),
        ],
    );
    let mut worker = RunningWorker::start_on(
        backend,
        &prefix,
        &config(
            &receiver,
            r#"initial = "1s", multiplier = 2.0, jitter = 0.0"#,
        ),
    )
    .await;
    let e = worker.publish(event("flaky")).await;
    let got = receiver.wait_for(3, WAIT).await;
    receiver.assert_no_more(3, Duration::from_millis(800)).await;

    let id = delivery_id(&e.id, "hook");
    for (n, r) in got.iter().enumerate() {
        assert_eq!(
            r.header("webhook-id"),
            Some(id.as_str()),
            "one webhook-id on every attempt"
        );
        assert_eq!(
            r.header("alertpost-attempt"),
            Some((n + 1).to_string().as_str())
        );
        assert_eq!(r.json()["id"], e.id.as_str());
    }
    // The schedule: 1 s, then 2 s, each waited out in its tier (TTLs expire
    // at the head of the queue, give or take a little).
    let gap1 = got[1].at - got[0].at;
    let gap2 = got[2].at - got[1].at;
    assert!(secs(gap1) >= 0.95 && secs(gap1) < 2.5, "first gap {gap1:?}");
    assert!(
        secs(gap2) >= 1.95 && secs(gap2) < 3.5,
        "second gap {gap2:?}"
    );

    // Every attempt is in the worker's store and on its admin API.
    let (status, body) = http_get(worker.admin, &format!("/v1/attempts?event_id={}", e.id))
        .await
        .unwrap();
    assert_eq!(status, 200);
    let attempts: Vec<Value> = serde_json::from_str(&body).unwrap();
    let outcomes: Vec<(&str, u64)> = attempts
        .iter()
        .map(|a| {
            (
                a["outcome"].as_str().unwrap(),
                a["attempt"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(outcomes, [("retry", 1), ("retry", 2), ("delivered", 3)]);
    assert_eq!(attempts[1]["response_body"], "busy");
    assert_eq!(attempts[1]["status"], 503);
    // Response headers are kept, a session cookie masked.
    let headers = &attempts[1]["response_headers"];
    assert!(
        headers
            .as_array()
            .unwrap()
            .contains(&serde_json::json!(["x-request-id", "r-2"])),
        "{headers}"
    );
    assert!(
        headers
            .as_array()
            .unwrap()
            .contains(&serde_json::json!(["set-cookie", "***"])),
        "{headers}"
    );
    assert!(!body.contains("s3cr3t-cookie"), "{body}");
    worker.stop().await.unwrap();
    all_empty(&worker, &prefix).await;
    assert!(dead_letters(&worker, &prefix).await.is_empty());
}

#[rstest]
#[case::rabbitmq(Backend::RabbitMq)]
#[case::embedded(Backend::Embedded)]
#[tokio::test]
async fn retry_after_is_honoured(#[case] backend: Backend) {
    let prefix = TestPrefix::with_tiers("retry-after", &[1, 3]);
    let receiver = Receiver::start().await;
    receiver.script(
        "/hook",
        [Reply::status(429).header("retry-after", "2"), Reply::ok()],
    );
    let mut worker = RunningWorker::start_on(
        backend,
        &prefix,
        &config(&receiver, r#"initial = "1s", jitter = 0.0"#),
    )
    .await;
    worker.publish(event("throttled")).await;
    let got = receiver.wait_for(2, WAIT).await;
    let gap = got[1].at - got[0].at;
    // Asked for 2 s. RabbitMQ: the smallest tier not shorter is 3 s; the
    // embedded queue waits the time asked.
    let least = match backend {
        Backend::RabbitMq => 2.95,
        Backend::Embedded => 1.95,
    };
    assert!(
        secs(gap) >= least && secs(gap) < least + 0.9,
        "waited {gap:?}"
    );
    worker.stop().await.unwrap();
    all_empty(&worker, &prefix).await;
}

#[rstest]
#[case::rabbitmq(Backend::RabbitMq)]
#[case::embedded(Backend::Embedded)]
#[tokio::test]
async fn an_absurd_retry_after_expires_the_delivery_without_a_loop(#[case] backend: Backend) {
    let prefix = TestPrefix::with_tiers("retry-after-huge", &[1]);
    let receiver = Receiver::start().await;
    receiver.script(
        "/hook",
        [Reply::status(503).header("retry-after", "99999999999999")],
    );
    let mut worker =
        RunningWorker::start_on(backend, &prefix, &config(&receiver, r#"max_age = "1h""#)).await;
    worker.publish(event("wait forever")).await;
    receiver.wait_for(1, WAIT).await;
    // Asked to wait past max_age: dead as expired at once, one request.
    let deadline = Instant::now() + WAIT;
    while worker.dead_count(&prefix).await == 0 {
        assert!(Instant::now() < deadline, "no dead letter");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    receiver
        .assert_no_more(1, Duration::from_millis(1500))
        .await;
    worker.stop().await.unwrap();
    let dead = dead_letters(&worker, &prefix).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["reason"], "expired");
}

#[rstest]
#[case::rabbitmq(Backend::RabbitMq)]
#[case::embedded(Backend::Embedded)]
#[tokio::test]
async fn exhausted_attempts_go_dead_with_the_whole_history(#[case] backend: Backend) {
    let prefix = TestPrefix::with_tiers("exhausted", &[1]);
    let receiver = Receiver::start().await;
    receiver.script(
        "/hook",
        (0..3).map(|i| Reply::status(503).body(&format!("down {i}"))),
    );
    let mut worker = RunningWorker::start_on(
        backend,
        &prefix,
        &config(
            &receiver,
            r#"initial = "1s", max_interval = "1s", jitter = 0.0, max_attempts = 3"#,
        ),
    )
    .await;
    let e = worker.publish(event("never")).await;
    receiver.wait_for(3, WAIT).await;
    receiver
        .assert_no_more(3, Duration::from_millis(1500))
        .await;
    worker.stop().await.unwrap();
    all_empty(&worker, &prefix).await;

    let dead = dead_letters(&worker, &prefix).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    let d = &dead[0];
    assert_eq!(d["reason"], "exhausted");
    assert_eq!(
        d["detail"],
        "gave up after 3 attempts; last: HTTP 503: down 2"
    );
    assert_eq!(d["job"]["attempts"], 3);
    assert_eq!(d["job"]["event"]["id"], e.id.as_str());
    let history: Vec<(u64, u64, &str)> = d["job"]["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["attempt"].as_u64().unwrap(),
                h["status"].as_u64().unwrap(),
                h["error"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        history,
        [
            (1, 503, "HTTP 503: down 0"),
            (2, 503, "HTTP 503: down 1"),
            (3, 503, "HTTP 503: down 2")
        ]
    );
}

#[rstest]
#[case::rabbitmq(Backend::RabbitMq)]
#[case::embedded(Backend::Embedded)]
#[tokio::test]
async fn a_delivery_past_max_age_is_dead_as_expired(#[case] backend: Backend) {
    let prefix = TestPrefix::with_tiers("expired", &[1, 2]);
    let receiver = Receiver::start().await;
    receiver.script("/hook", (0..5).map(|_| Reply::status(500)));
    let mut worker = RunningWorker::start_on(
        backend,
        &prefix,
        &config(
            &receiver,
            r#"initial = "1s", multiplier = 2.0, jitter = 0.0, max_age = "2s""#,
        ),
    )
    .await;
    worker.publish(event("too late")).await;
    receiver.wait_for(2, WAIT).await;
    receiver
        .assert_no_more(2, Duration::from_millis(2500))
        .await;
    worker.stop().await.unwrap();
    let dead = dead_letters(&worker, &prefix).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["reason"], "expired");
    assert_eq!(dead[0]["job"]["attempts"], 2);
}

/// A message given back again and again (a worker crashing on it, a
/// hand-off never confirmed) ends in the dead queue at the delivery limit.
#[tokio::test]
async fn a_message_requeued_past_the_delivery_limit_is_dead() {
    let mut prefix = TestPrefix::new("limit");
    prefix.topology = prefix.topology.clone().with_delivery_limit(2);
    let broker = prefix.broker().await;
    broker.declare().await.unwrap();
    // Published through this topology's own broker: the producer library
    // would declare the default limit.
    let body = serde_json::to_vec(&event("poison")).unwrap();
    broker
        .publisher()
        .await
        .unwrap()
        .publish(
            &Destination::Deliveries,
            &Outgoing {
                body: &body,
                kind: JOB_SCHEMA,
                message_id: "poison",
            },
        )
        .await
        .unwrap();
    let mut consumer = broker
        .consume(&alertpost_seam::Source::Deliveries, 1, "poison")
        .await
        .unwrap();
    // Delivered, given back; delivered again, given back; the third time
    // the broker dead-letters it instead.
    for _ in 0..3 {
        let taken = tokio::time::timeout(Duration::from_secs(5), consumer.next()).await;
        match taken {
            Ok(Some(Ok(msg))) => msg.requeue().await.unwrap(),
            _ => break,
        }
    }
    let deadline = Instant::now() + WAIT;
    while prefix.ready(&prefix.topology.dead_queue()).await == 0 {
        assert!(Instant::now() < deadline, "not dead-lettered at the limit");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    consumer.cancel().await;
    broker.close().await;
    let dead = rabbit_dead_letters(&prefix).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(
        dead[0]["title"], "poison",
        "the message itself, as published"
    );
    assert_eq!(prefix.ready(&prefix.topology.deliveries_queue()).await, 0);
}

#[tokio::test]
async fn a_malformed_job_is_dead_lettered_and_the_worker_goes_on() {
    let prefix = TestPrefix::new("bad-job");
    let receiver = Receiver::start().await;
    let mut worker = RunningWorker::start(&prefix, &config(&receiver, "")).await;
    let broker = prefix.broker().await;
    let publisher = broker.publisher().await.unwrap();
    let msg = Outgoing {
        body: br#"{"delivery_id": 7}"#,
        kind: JOB_SCHEMA,
        message_id: "job-garbage",
    };
    publisher
        .publish(&Destination::Deliveries, &msg)
        .await
        .unwrap();
    prefix
        .producer()
        .await
        .publish(event("after"))
        .await
        .unwrap();
    receiver.wait_for(1, WAIT).await;
    worker.stop().await.unwrap();
    broker.close().await;
    let dead = rabbit_dead_letters(&prefix).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["reason"], "undecodable");
    assert_eq!(dead[0]["id"], "job-garbage");
    assert!(
        dead[0]["detail"]
            .as_str()
            .unwrap()
            .contains("not a valid alertpost.job.v1 delivery job")
    );
    assert_eq!(dead[0]["raw"], r#"{"delivery_id": 7}"#);
    rabbit_all_empty(&prefix).await;
}

#[tokio::test]
async fn a_job_waiting_in_a_delay_queue_outlives_its_worker() {
    let prefix = TestPrefix::with_tiers("job-survives", &[1, 3]);
    prefix.register_lanes(["hook"]);
    let receiver = Receiver::start().await;
    receiver.script("/hook", [Reply::status(503)]);
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "delay_tiers = [\"1s\", \"3s\"]\n{}",
        config(&receiver, r#"initial = "3s", jitter = 0.0"#)
    );
    let path = dir.path().join("a.toml");
    std::fs::write(&path, &toml).unwrap();
    let mut first = alertpost(&prefix)
        .args([
            "worker",
            "--config",
            path.to_str().unwrap(),
            "--admin-addr",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(dir.path().join("a"))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let e = prefix
        .producer()
        .await
        .publish(event("patient"))
        .await
        .unwrap();
    receiver.wait_for(1, WAIT).await;
    // Give the hand-off its confirm, then kill: the job waits in the 3 s tier.
    tokio::time::sleep(Duration::from_millis(500)).await;
    first.kill().unwrap();
    first.wait().unwrap();
    let killed = Instant::now();

    let mut second = RunningWorker::start(&prefix, &toml).await;
    let got = receiver.wait_for(2, WAIT).await;
    assert!(
        killed.elapsed() >= Duration::from_secs(2),
        "delivered only after the delay"
    );
    assert_eq!(got[1].header("alertpost-attempt"), Some("2"));
    assert_eq!(
        got[1].header("webhook-id"),
        Some(delivery_id(&e.id, "hook").as_str())
    );
    second.stop().await.unwrap();
    rabbit_all_empty(&prefix).await;
}

#[tokio::test]
async fn a_redelivered_message_does_not_resend_a_journaled_delivery() {
    use alertpost_tests::proxy::Proxy;

    let prefix = TestPrefix::new("journal");
    let receiver = Receiver::start().await;
    receiver.script("/hook", [Reply::ok().delay(Duration::from_millis(800))]);
    let proxy = Proxy::start(prefix.broker_addr()).await;
    let mut worker = RunningWorker::spawn(&prefix, &proxy.amqp_url(), &config(&receiver, "")).await;
    worker.wait_ready(WAIT).await;
    let e = prefix
        .producer()
        .await
        .publish(event("once"))
        .await
        .unwrap();
    receiver.wait_for(1, WAIT).await;
    // The request is out; the connection goes before the answer and the ack.
    proxy.down();
    worker.wait_readyz(503, WAIT).await;
    proxy.up();
    worker.wait_ready(WAIT).await;
    // The message comes again; the journal says delivered; no second request.
    let deadline = Instant::now() + WAIT;
    while prefix.ready(&prefix.topology.events_queue()).await > 0 || receiver.count() == 0 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    receiver
        .assert_no_more(1, Duration::from_millis(1500))
        .await;
    let journal = worker
        .store
        .progress(&delivery_id(&e.id, "hook"))
        .expect("journaled");
    assert_eq!(journal, alertpost_store::Progress::Delivered);
    worker.stop().await.unwrap();
    rabbit_all_empty(&prefix).await;
}

/// How `alertpost dlq` reaches the dead queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    /// Straight through RabbitMQ.
    Broker,
    /// Through the running worker's admin API, with its token.
    Admin,
}

const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

// Multi-threaded: the receiver answers while the test waits on commands.
#[rstest]
#[case::rabbitmq_through_the_broker(Backend::RabbitMq, Via::Broker)]
#[case::rabbitmq_through_the_admin_api(Backend::RabbitMq, Via::Admin)]
#[case::embedded_through_the_admin_api(Backend::Embedded, Via::Admin)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_list_show_and_replay_deliver_once_the_endpoint_is_fixed(
    #[case] backend: Backend,
    #[case] via: Via,
) {
    let prefix = TestPrefix::new("dlq");
    let receiver = Receiver::start().await;
    receiver.script("/hook", [Reply::status(410).body("gone for now")]);
    let toml = format!(
        "[admin]\ntoken = \"{ADMIN_TOKEN}\"\n{}",
        config(&receiver, "")
    );
    let mut worker = RunningWorker::start_on(backend, &prefix, &toml).await;
    let e = worker.publish(event("replay me")).await;
    receiver.wait_for(1, WAIT).await;
    let id = delivery_id(&e.id, "hook");
    // Wait for the dead letter to land.
    let deadline = Instant::now() + WAIT;
    while worker.dead_count(&prefix).await == 0 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let admin = worker.admin.to_string();
    let run_with = |args: &[&str], token: Option<&str>| {
        let mut command = alertpost(&prefix);
        command.arg("dlq");
        if via == Via::Admin {
            command.args(["--admin", &admin]);
        }
        match token {
            Some(t) => command.env("ALERTPOST_ADMIN_TOKEN", t),
            None => command.env_remove("ALERTPOST_ADMIN_TOKEN"),
        };
        let out = command.args(args).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let run = |args: &[&str]| run_with(args, Some(ADMIN_TOKEN));
    if via == Via::Admin {
        // The token is needed, and a wrong one is refused.
        let (code, out, err) = run_with(&["list"], None);
        assert_eq!(code, 2, "{out}{err}");
        assert!(
            err.contains("401") && err.contains("ALERTPOST_ADMIN_TOKEN"),
            "{err}"
        );
        let (code, _, err) = run_with(&["list"], Some("not-the-token-at-all"));
        assert_eq!(code, 2);
        assert!(err.contains("token was refused"), "{err}");
        assert!(!err.contains(ADMIN_TOKEN), "{err}");
        // The probes and the metrics stay open.
        for open in ["/healthz", "/readyz", "/metrics"] {
            assert_eq!(
                http_get(worker.admin, open).await.map(|(s, _)| s),
                Some(200),
                "{open}"
            );
        }
        assert_eq!(
            http_get(worker.admin, "/v1/dlq").await.map(|(s, _)| s),
            Some(401)
        );
    }
    let (code, out, err) = run(&["list", "--json"]);
    assert_eq!(code, 0, "{err}");
    let list: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(list.len(), 1, "{out}");
    assert_eq!(list[0]["delivery_id"], id.as_str());
    assert_eq!(list[0]["event_id"], e.id.as_str());
    assert_eq!(list[0]["integration"], "hook");
    assert_eq!(list[0]["reason"], "status");
    assert_eq!(list[0]["attempts"], 1);
    let (code, out, _) = run(&["list"]);
    assert_eq!(code, 0);
    assert!(
        out.contains(&id) && out.contains("HTTP 410: gone for now"),
        "{out}"
    );
    assert_eq!(
        worker.dead_count(&prefix).await,
        1,
        "listing leaves it in place"
    );

    let (code, out, _) = run(&["show", &e.id]);
    assert_eq!(code, 0);
    let shown: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["job"]["history"][0]["status"], 410);
    let (code, _, err) = run(&["show", "no-such-letter"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no dead letter `no-such-letter`"), "{err}");
    let (code, _, err) = run(&["replay"]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(
        worker.dead_count(&prefix).await,
        1,
        "showing leaves it in place"
    );

    // The endpoint is fixed (the next answer is the default 200).
    let (code, out, err) = run(&["replay", "--integration", "hook"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("replayed 1 dead letters"), "{out}");
    let got = receiver.wait_for(2, WAIT).await;
    assert_eq!(got[1].header("webhook-id"), Some(id.as_str()));
    assert_eq!(
        got[1].header("alertpost-attempt"),
        Some("1"),
        "attempts reset"
    );
    receiver.assert_no_more(2, Duration::from_millis(500)).await;
    assert_eq!(worker.dead_count(&prefix).await, 0);

    // The worker's own record, by the CLI through the admin API.
    let out = alertpost(&prefix)
        .args(["attempts", &e.id, "--admin", &admin])
        .env("ALERTPOST_ADMIN_TOKEN", ADMIN_TOKEN)
        .output()
        .unwrap();
    let (code, out, err) = (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].contains("dead") && lines[0].contains("410"),
        "{out}"
    );
    assert!(
        lines[1].contains("delivered") && lines[1].contains("200"),
        "{out}"
    );

    // One more dead letter, replayed while the endpoint still refuses: it
    // is sent once and dies again, no loop; then purged.
    receiver.script("/hook", (0..5).map(|_| Reply::status(410)));
    worker.publish(event("purge me")).await;
    let deadline = Instant::now() + WAIT;
    while worker.dead_count(&prefix).await == 0 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (code, out, err) = run(&["replay", "--all"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("replayed 1 dead letters"), "{out}");
    receiver.wait_for(4, WAIT).await;
    receiver
        .assert_no_more(4, Duration::from_millis(1500))
        .await;
    let deadline = Instant::now() + WAIT;
    while worker.dead_count(&prefix).await == 0 {
        assert!(Instant::now() < deadline, "dead again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (code, _, err) = run(&["purge"]);
    assert_eq!(code, 2);
    assert!(err.contains("--yes"), "{err}");
    let (code, out, err) = run(&["purge", "--yes"]);
    assert_eq!((code, out.trim()), (0, "purged 1 dead letters"), "{err}");
    assert_eq!(worker.dead_count(&prefix).await, 0);
    let (code, out, _) = run(&["list"]);
    assert_eq!((code, out.trim()), (0, "no dead letters"));
    assert_eq!(worker.waiting(&prefix).await, 0, "nothing waits");
    worker.stop().await.unwrap();
}

#[tokio::test]
async fn a_second_worker_on_one_data_dir_is_refused() {
    let prefix = TestPrefix::new("locked");
    prefix.register_lanes(["x"]);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        "[[integration]]\nid = \"x\"\nurl = \"https://x.example.com\"\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let start = || {
        alertpost(&prefix)
            .args([
                "worker",
                "--config",
                config.to_str().unwrap(),
                "--admin-addr",
                "127.0.0.1:0",
            ])
            .arg("--data-dir")
            .arg(&data)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut first = start();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let second = start().wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{err}");
    assert!(
        err.contains("in use by another process") && err.contains(&data.display().to_string()),
        "{err}"
    );
    let _ = Command::new("kill")
        .args(["-TERM", &first.id().to_string()])
        .status();
    first.wait().unwrap();
}

#[tokio::test]
async fn a_delay_longer_than_the_largest_tier_takes_several_hops() {
    let prefix = TestPrefix::with_tiers("hops", &[1]);
    let receiver = Receiver::start().await;
    receiver.script("/hook", [Reply::status(503)]);
    let mut worker = RunningWorker::start(
        &prefix,
        &config(&receiver, r#"initial = "3s", jitter = 0.0"#),
    )
    .await;
    prefix.producer().await.publish(event("far")).await.unwrap();
    let got = receiver.wait_for(2, WAIT).await;
    let gap = got[1].at - got[0].at;
    // Three hops through the one-second tier, not one.
    assert!(secs(gap) >= 2.9 && secs(gap) < 5.5, "{gap:?}");
    worker.stop().await.unwrap();
    rabbit_all_empty(&prefix).await;
}
