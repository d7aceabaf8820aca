//! The `alertpost` binary: exit codes, output, signals, a crash.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use alertpost_producer::Producer;
use alertpost_tests::bin::alertpost;
use alertpost_tests::{Receiver, Reply, RunningWorker, TestPrefix};

const WAIT: Duration = Duration::from_secs(30);

fn examples(name: &str) -> String {
    format!("{}/../examples/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().expect("alertpost runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write_config(dir: &tempfile::TempDir, receiver: &Receiver, extra: &str) -> std::path::PathBuf {
    let path = dir.path().join("alertpost.toml");
    let text = format!(
        "[policy]\nallow_networks = [\"127.0.0.0/8\"]\n{extra}\n[[integration]]\nid = \"hook\"\nurl = \"{}\"\ntimeout = \"5s\"\nconcurrency = 2\n",
        receiver.url("/hook")
    );
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn publish_confirms_every_event_and_prints_the_count() {
    let prefix = TestPrefix::new("cli-publish");
    let events = prefix.topology.events_queue();

    let (code, out, err) = run(alertpost(&prefix).args(["publish", &examples("events.ndjson")]));
    assert_eq!((code, out.trim()), (0, "published 3 events"), "{err}");
    assert_eq!(prefix.ready(&events).await, 3);

    let (code, out, err) = run(alertpost(&prefix).args([
        "publish",
        "--format",
        "alertmanager",
        &examples("payloads/alertmanager.json"),
    ]));
    assert_eq!((code, out.trim()), (0, "published 2 events"), "{err}");

    let mut child = alertpost(&prefix)
        .args(["publish", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"{\"source\":\"cron\",\"status\":\"firing\",\"title\":\"from stdin\"}\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "published 1 events"
    );
    assert_eq!(prefix.ready(&events).await, 6);
}

#[tokio::test]
async fn publish_refuses_bad_input_whole_and_fails_without_a_broker() {
    let prefix = TestPrefix::new("cli-publish-bad");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.ndjson");
    std::fs::write(
        &file,
        "{\"source\":\"a\",\"status\":\"firing\",\"title\":\"ok\"}\n{\"source\":\"a\",\"status\":\"exploded\",\"title\":\"x\"}\n",
    )
    .unwrap();
    let (code, out, err) = run(alertpost(&prefix).args(["publish", file.to_str().unwrap()]));
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("bad.ndjson:2:") && err.contains("unknown variant `exploded`"),
        "{err}"
    );
    assert!(err.contains("nothing published"), "{err}");

    // Declared by nobody yet: the queue does not exist, so nothing was sent.
    let broker = prefix.broker().await;
    assert!(
        broker
            .queue_stats(&prefix.topology.events_queue())
            .await
            .is_err()
    );
    broker.close().await;

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (code, _, err) = run(alertpost(&prefix)
        .env(
            "ALERTPOST_AMQP_URL",
            format!("amqp://guest:secretpw@127.0.0.1:{port}/%2f"),
        )
        .args(["publish", &examples("events.ndjson")]));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("RabbitMQ is unavailable"), "{err}");
    assert!(!err.contains("secretpw"), "{err}");

    let (code, _, err) = run(alertpost(&prefix).args(["publish", "--format", "nagios", "x"]));
    assert_eq!(code, 2);
    assert!(err.contains("unknown format `nagios`"), "{err}");
}

#[tokio::test]
async fn check_lists_every_problem_and_setup_declares() {
    let prefix = TestPrefix::new("cli-check");
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[[integration]]\nid = \"a\"\nurl = \"ftp://x\"\n[[integration]]\nid = \"b\"\nurl = \"https://x.example.com\"\ntimeout = \"soon\"\n",
    )
    .unwrap();
    let (code, out, _) = run(alertpost(&prefix).args(["check", "--config", bad.to_str().unwrap()]));
    assert_eq!(code, 2);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].ends_with("bad.toml:3:7: integration `a`, field `url`: scheme `ftp` is not supported; use http or https"), "{out}");
    assert!(
        lines[1].contains("bad.toml:7:11: integration `b`, field `timeout`"),
        "{out}"
    );

    let (code, out, err) =
        run(alertpost(&prefix).args(["check", "--config", &examples("alertpost.toml")]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("OK"), "{out}");

    let (code, out, err) = run(alertpost(&prefix).arg("setup"));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&prefix.topology.dead_queue()), "{out}");
    let broker = prefix.broker().await;
    for queue in prefix.topology.queues() {
        broker
            .queue_stats(&queue)
            .await
            .unwrap_or_else(|e| panic!("{queue}: {e}"));
    }
    broker.close().await;
}

#[tokio::test]
async fn a_killed_worker_loses_nothing() {
    let prefix = TestPrefix::new("crash");
    let receiver = Receiver::start().await;
    // Slow answers keep deliveries in flight when the worker dies.
    receiver.script(
        "/hook",
        (0..1000).map(|_| Reply::ok().delay(Duration::from_millis(100))),
    );
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&dir, &receiver, "");

    let mut first = alertpost(&prefix)
        .args([
            "worker",
            "--config",
            config.to_str().unwrap(),
            "--admin-addr",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    let n = 40;
    let producer = Producer::connect(&prefix.url, &prefix.prefix, "test")
        .await
        .unwrap();
    let published = producer
        .publish_all(
            (0..n)
                .map(|i| {
                    alertpost_event::Event::new(
                        "t",
                        alertpost_event::Status::Firing,
                        format!("e{i}"),
                    )
                })
                .collect(),
        )
        .await
        .unwrap();
    receiver.wait_for(6, WAIT).await;
    first.kill().unwrap(); // SIGKILL: no drain, no acks
    first.wait().unwrap();
    let before = receiver.count();
    assert!(
        before < n,
        "the first worker was to die mid-stream ({before} of {n} delivered)"
    );

    let toml = std::fs::read_to_string(&config).unwrap();
    let second = RunningWorker::start(&prefix, &toml).await;
    let deadline = Instant::now() + WAIT;
    let expected: BTreeSet<String> = published.iter().map(|e| e.id.clone()).collect();
    loop {
        let got: BTreeSet<String> = receiver
            .requests()
            .iter()
            .map(|r| r.header("alertpost-event-id").unwrap().to_owned())
            .collect();
        if got == expected {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "missing {:?}",
            expected.difference(&got).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    second.stop().await.unwrap();
    assert_eq!(prefix.ready(&prefix.topology.events_queue()).await, 0);
    // At-least-once: only what was in flight at the kill may come twice.
    assert!(
        receiver.count() <= n + 2 * 2,
        "{} requests for {n} events",
        receiver.count()
    );
}

#[tokio::test]
async fn sigterm_drains_and_exits_zero() {
    let prefix = TestPrefix::new("sigterm");
    let receiver = Receiver::start().await;
    receiver.script(
        "/hook",
        (0..2).map(|_| Reply::ok().delay(Duration::from_millis(800))),
    );
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&dir, &receiver, "");
    let worker = alertpost(&prefix)
        .args([
            "worker",
            "--config",
            config.to_str().unwrap(),
            "--admin-addr",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let producer = Producer::connect(&prefix.url, &prefix.prefix, "test")
        .await
        .unwrap();
    producer
        .publish_all(
            (0..2)
                .map(|i| {
                    alertpost_event::Event::new(
                        "t",
                        alertpost_event::Status::Firing,
                        format!("e{i}"),
                    )
                })
                .collect(),
        )
        .await
        .unwrap();
    receiver.wait_for(2, WAIT).await;
    let status = Command::new("kill")
        .args(["-TERM", &worker.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || worker.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(stderr.contains("draining"), "{stderr}");
    // Both in-flight deliveries finished and were acked before exit.
    assert_eq!(prefix.ready(&prefix.topology.events_queue()).await, 0);
    receiver.assert_no_more(2, Duration::from_millis(200)).await;
}
