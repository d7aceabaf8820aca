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
    let (code, out, err) = run(alertpost(&prefix).args(["publish", &examples("events.ndjson")]));
    assert_eq!((code, out.trim()), (0, "published 3 events"), "{err}");
    assert_eq!(prefix.ready_events().await, 3);

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
    assert_eq!(prefix.ready_events().await, 6);
}

#[tokio::test]
async fn publish_refuses_bad_input_whole_and_fails_without_a_broker() {
    let prefix = TestPrefix::new("cli-publish-bad");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.ndjson");
    // `alertpost publish` of `contents`, refused as bad input: its stderr.
    let refused = |contents: &str| {
        std::fs::write(&file, contents).unwrap();
        let (code, out, err) = run(alertpost(&prefix).args(["publish", file.to_str().unwrap()]));
        assert_eq!(code, 2, "{contents}: {out}{err}");
        err
    };
    let err = refused(
        "{\"source\":\"a\",\"status\":\"firing\",\"title\":\"ok\"}\n{\"source\":\"a\",\"status\":\"exploded\",\"title\":\"x\"}\n",
    );
    assert!(
        err.contains("bad.ndjson:2:") && err.contains("unknown variant `exploded`"),
        "{err}"
    );
    assert!(err.contains("nothing published"), "{err}");
    // Decoded straight from their bytes when they can be; when not, the
    // refusal names the event of an array, and the place in the input of
    // what only parsing finds (a number out of range). The check goes on
    // past that one: its syntax is sound, so the split is.
    let err = refused(
        "[{\"source\":\"a\",\"status\":\"firing\",\"title\":\"ok\"},{\"source\":\"a\",\"status\":\"firing\",\"title\":\"x\",\"severity\":\"nope\"}]\n  {\"source\":\"a\",\n\"n\": 1e400}\n{\"source\":\"a\",\"status\":\"gone\",\"title\":\"x\"}\n",
    );
    assert!(err.contains("bad.ndjson:1: event 1:"), "{err}");
    assert!(
        err.contains("bad.ndjson:2: invalid JSON: number out of range at line 3 column"),
        "{err}"
    );
    assert!(
        err.contains("bad.ndjson:4:") && err.contains("unknown variant `gone`"),
        "{err}"
    );
    assert!(err.contains("3 invalid document(s)"), "{err}");
    // A time that cannot be written back (found: "published 1 events", then
    // dead-lettered as undecodable; the second one panicked, exit 101).
    for time in ["0000-01-01T00:00:00+00:01", "9999-12-31T23:59:59-00:01"] {
        let err = refused(&format!(
            "{{\"source\":\"a\",\"status\":\"firing\",\"title\":\"t\",\"occurred_at\":\"{time}\"}}\n"
        ));
        assert!(
            err.contains("occurred_at") && err.contains("out of range"),
            "{err}"
        );
    }

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

/// The largest resident size seen of a running child (KiB), read from
/// /proc while it runs, and how it ended.
fn peak_rss_while_running(mut child: std::process::Child) -> (u64, std::process::Output) {
    let pid = child.id();
    let mut peak = 0u64;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut stdout = child.stdout.take();
    let reader = std::thread::spawn(move || {
        let mut text = Vec::new();
        if let Some(out) = stdout.as_mut() {
            let _ = std::io::Read::read_to_end(out, &mut text);
        }
        text
    });
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "publish did not end");
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status"))
            && let Some(kib) = status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        {
            peak = peak.max(kib);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut out = child.wait_with_output().unwrap();
    out.stdout = reader.join().unwrap();
    (peak, out)
}

/// `publish` reads its input one document at a time, twice (a check, then
/// the publish), from a file or from stdin (spooled to a temporary file):
/// its memory is that of a chunk, not of the input. Found: a 64 MiB file
/// took 433 MiB.
#[tokio::test]
async fn publish_streams_its_input_in_bounded_memory() {
    let prefix = TestPrefix::new("cli-publish-stream");
    let dir = tempfile::tempdir().unwrap();
    // Events of about 4 KiB: 24 MiB of them is about 6 000 events.
    let line = format!(
        "{{\"source\":\"bulk\",\"status\":\"firing\",\"title\":\"Disk usage high\",\"message\":\"{}\"}}\n",
        "x".repeat(4000)
    );
    let n = (24 << 20) / line.len();
    let big = dir.path().join("big.ndjson");
    std::fs::write(&big, line.repeat(n)).unwrap();
    // Measured: a debug build about 20 MiB to check and 37 MiB to publish
    // (43 MiB with mimalloc, which holds freed pages a little longer);
    // reading the input whole took 3.5 times the input (84 MiB here).
    const LIMIT_KIB: u64 = 48 * 1024;

    // Valid: checked, then published, every event once.
    let child = alertpost(&prefix)
        .args(["publish", big.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (peak, out) = peak_rss_while_running(child);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("published {n} events")
    );
    assert!(
        peak > 0 && peak < LIMIT_KIB,
        "peak RSS {peak} KiB publishing 24 MiB"
    );
    assert_eq!(
        prefix.ready(&prefix.topology.events_queue()).await,
        n as u32
    );

    // 24 MiB of valid events, then one that is not: refused whole.
    let mut text = line.repeat(n);
    text.push_str("{\"source\":\"bulk\",\"status\":\"exploded\",\"title\":\"t\"}\n");

    // The same through stdin.
    let mut child = alertpost(&prefix)
        .args(["publish", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(text.as_bytes()));
    let (peak, out) = peak_rss_while_running(child);
    writer.join().unwrap().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("stdin:{}:", n + 1)), "{err}");
    assert!(
        peak > 0 && peak < LIMIT_KIB,
        "peak RSS {peak} KiB for 24 MiB on stdin"
    );

    // Valid input of several chunks, from stdin, documents spread over
    // lines: every event published once, the count printed.
    let events = 5_000;
    let mut input = String::new();
    for i in 0..events {
        input.push_str(&format!(
            "{{\"source\": \"bulk\",\n \"status\": \"firing\",\n \"title\": \"event {i}\"}}\n"
        ));
    }
    let mut child = alertpost(&prefix)
        .args(["publish"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("published {events} events")
    );
    assert_eq!(
        prefix.ready(&prefix.topology.events_queue()).await,
        (n + events) as u32
    );
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
    // Each integration's order is shown, the default included.
    assert!(out.contains(", order latest"), "{out}");

    // The URL from a file (not on the command line, where `ps` shows it),
    // with a dead node first in the list.
    let urls = dir.path().join("amqp-url");
    std::fs::write(
        &urls,
        format!("amqp://guest:guest@127.0.0.1:1/%2f\n{}\n", prefix.url),
    )
    .unwrap();
    let (code, out, err) = run(alertpost(&prefix)
        .env("ALERTPOST_AMQP_URL", "amqp://guest:guest@127.0.0.1:2/%2f")
        .args(["setup", "--amqp-file", urls.to_str().unwrap()]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&prefix.topology.dead_queue()), "{out}");
    let (code, _, err) = run(alertpost(&prefix).args(["setup", "--amqp-file", "/no/such/file"]));
    assert_eq!(code, 2);
    assert!(err.contains("--amqp-file"), "{err}");
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
    prefix.register_lanes(["hook"]);
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
    let mut second = RunningWorker::start(&prefix, &toml).await;
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
    prefix.register_lanes(["hook"]);
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
    let events = producer
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
    // Both in-flight deliveries finished and were acked before exit...
    assert_eq!(prefix.ready(&prefix.topology.events_queue()).await, 0);
    receiver.assert_no_more(2, Duration::from_millis(200)).await;
    // ...and recorded: the store took records until the drain was over.
    for e in &events {
        let out = alertpost(&prefix)
            .args(["attempts", &e.id, "--json", "--data-dir"])
            .arg(dir.path().join("data"))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let attempts: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(attempts[0]["outcome"], "delivered", "{stdout}");
    }
}

// Multi-threaded: the receiver must answer while the test waits on the
// command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_command_shows_the_exchange_and_fails_on_a_failure() {
    let prefix = TestPrefix::new("cli-test");
    let receiver = Receiver::start().await;
    receiver.script(
        "/ok",
        [Reply::ok()
            .header("x-request-id", "r-42")
            .body(r#"{"status":"accepted","echo":"R0UT1NGK3Y"}"#)],
    );
    receiver.script(
        "/bad",
        (0..2).map(|_| Reply::status(422).body(r#"{"error":"unknown field"}"#)),
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("t.toml");
    std::fs::write(
        &config,
        format!(
            "[policy]\nallow_networks = [\"127.0.0.0/8\"]\n\
             [[integration]]\nid = \"pd\"\nurl = \"{}\"\nformat = \"pagerduty\"\nrouting_key = \"R0UT1NGK3Y\"\nenabled = false\n\
             auth = {{ type = \"bearer\", token = \"t0ps3cret\" }}\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n\
             validate = [{{ path = \"$.status\", expected = [\"accepted\"] }}]\n\
             [[integration]]\nid = \"bad\"\nurl = \"{}\"\n",
            receiver.url("/ok"),
            receiver.url("/bad")
        ),
    )
    .unwrap();
    let (code, out, err) = run(alertpost(&prefix).args([
        "test",
        "--config",
        config.to_str().unwrap(),
        "--integration",
        "pd",
    ]));
    assert_eq!(code, 0, "{out}{err}");
    for expected in [
        "integration pd (pd, disabled), format pagerduty",
        "from the sample event",
        &format!("> POST {}", receiver.url("/ok")),
        "> authorization: *** (masked)",
        "> webhook-signature: v1,",
        "> content-type: application/json",
        "\"routing_key\":\"***\"",
        "< HTTP 200 (",
        "< x-request-id: r-42",
        "\"echo\":\"***\"",
        "ok    $.status in [accepted]",
        "result: delivered",
    ] {
        assert!(out.contains(expected), "missing `{expected}` in:\n{out}");
    }
    assert!(
        !out.contains("t0ps3cret") && !out.contains("R0UT1NGK3Y"),
        "{out}"
    );
    let sent = receiver.requests_to("/ok");
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].json()["routing_key"],
        "R0UT1NGK3Y",
        "the real key is sent"
    );

    let (code, out, _) = run(alertpost(&prefix).args([
        "test",
        "--config",
        config.to_str().unwrap(),
        "--integration",
        "bad",
    ]));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("< HTTP 422"), "{out}");
    assert!(
        out.contains("result: failed, would be dead-lettered (status): HTTP 422"),
        "{out}"
    );

    let event = dir.path().join("e.json");
    std::fs::write(
        &event,
        r#"{"source":"me","status":"firing","title":"From a file"}"#,
    )
    .unwrap();
    let (code, out, err) = run(alertpost(&prefix).args([
        "test",
        "--config",
        config.to_str().unwrap(),
        "--integration",
        "bad",
        "--event",
        event.to_str().unwrap(),
    ]));
    assert_eq!(code, 1, "{err}");
    assert!(out.contains("\"title\":\"From a file\""), "{out}");

    let (code, _, err) = run(alertpost(&prefix).args([
        "test",
        "--config",
        config.to_str().unwrap(),
        "--integration",
        "nope",
    ]));
    assert_eq!(code, 2);
    assert!(
        err.contains("no integration `nope`") && err.contains("ids: pd, bad"),
        "{err}"
    );
}

#[tokio::test]
async fn check_lists_template_auth_and_matcher_problems() {
    let prefix = TestPrefix::new("cli-check2");
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        r#"[[integration]]
id = "a"
url = "https://a.example.com"
match = ['severity=~"(unclosed"']
template = '''
{ "t": "{{ titel }}" }
'''

[[integration]]
id = "b"
url = "https://b.example.com"
auth = { type = "oauth2", client_id = "x" }
secret = "${MISSING_SIGNING_SECRET}"
"#,
    )
    .unwrap();
    let (code, out, _) = run(alertpost(&prefix).args(["check", "--config", bad.to_str().unwrap()]));
    assert_eq!(code, 2);
    let lines: Vec<&str> = out.lines().collect();
    let expected = [
        "bad.toml:4:10: integration `a`, field `match[0]`: `(unclosed` is not a valid regular expression",
        "bad.toml:6:12: integration `a`, field `template`: `titel` is not a field of the event",
        "bad.toml:12:8: integration `b`, field `auth.client_secret`: required by auth type oauth2",
        "bad.toml:12:8: integration `b`, field `auth.token_url`: required by auth type oauth2",
        "bad.toml:13:10: integration `b`, field `secret`: environment variable `MISSING_SIGNING_SECRET` is not set",
    ];
    assert_eq!(lines.len(), expected.len(), "{out}");
    for (line, want) in lines.iter().zip(expected) {
        assert!(line.contains(want), "got:  {line}\nwant: {want}");
    }
}

#[tokio::test]
async fn sighup_reloads_a_valid_config_and_refuses_an_invalid_one() {
    let prefix = TestPrefix::new("sighup");
    prefix.register_lanes(["hook"]);
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("alertpost.toml");
    let write = |path: &str| {
        std::fs::write(
            &config,
            format!("[policy]\nallow_networks = [\"127.0.0.0/8\"]\n[[integration]]\nid = \"hook\"\nurl = \"{}\"\n", receiver.url(path)),
        )
        .unwrap();
    };
    write("/first");
    let mut worker = alertpost(&prefix)
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
    let stderr = worker.stderr.take().unwrap();
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = log.clone();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            sink.lock().unwrap().push_str(&(line + "\n"));
        }
    });
    let wait_log = |needle: &'static str| {
        let log = log.clone();
        async move {
            let deadline = Instant::now() + WAIT;
            while !log.lock().unwrap().contains(needle) {
                assert!(
                    Instant::now() < deadline,
                    "no `{needle}` in the log:\n{}",
                    log.lock().unwrap()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let hup = || {
        let status = Command::new("kill")
            .args(["-HUP", &worker.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };
    wait_log("connected to RabbitMQ").await;
    let producer = Producer::connect(&prefix.url, &prefix.prefix, "test")
        .await
        .unwrap();
    let e = |t: &str| alertpost_event::Event::new("t", alertpost_event::Status::Firing, t);
    producer.publish(e("one")).await.unwrap();
    receiver.wait_for(1, WAIT).await;

    std::fs::write(
        &config,
        "[[integration]]\nid = \"hook\"\nurl = \"ftp://nope\"\n",
    )
    .unwrap();
    hup();
    wait_log("new configuration refused").await;
    assert!(
        log.lock()
            .unwrap()
            .contains("scheme `ftp` is not supported")
    );
    producer.publish(e("two")).await.unwrap();
    receiver.wait_for(2, WAIT).await;
    assert_eq!(
        receiver.requests_to("/first").len(),
        2,
        "the old config keeps running"
    );

    write("/second");
    hup();
    wait_log("configuration reloaded").await;
    producer.publish(e("three")).await.unwrap();
    receiver.wait_for(3, WAIT).await;
    assert_eq!(receiver.requests_to("/second").len(), 1);

    let status = Command::new("kill")
        .args(["-TERM", &worker.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(worker.wait().unwrap().code(), Some(0));
}

/// `alertpost check` reads and checks the TLS files of each integration
/// and names the field and line of each problem: a missing file, a key
/// that is not the certificate's, a certificate without its key, a
/// server name for a URL with a host name, an unknown TLS version, tls on
/// an http URL; the good ones pass and show.
#[test]
fn check_reads_and_checks_tls_files() {
    use alertpost_tests::tls::TestCa;
    let prefix = TestPrefix::new("cli-check-tls");
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "private");
    // Files the configs below name, relative to their directory.
    ca.issue("one", &["one.test"]);
    ca.issue("two", &["two.test"]);
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "[[integration]]\nid = \"a\"\nurl = \"https://one.test/x\"\n\
         tls = { ca_file = \"private-ca.pem\", cert_file = \"one.pem\", key_file = \"one.key\" }\n",
    )
    .unwrap();
    // Relative paths are from the config file's directory.
    let (code, out, err) =
        run(alertpost(&prefix).args(["check", "--config", good.to_str().unwrap()]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("tls"), "{out}");

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[[integration]]\nid = \"a\"\nurl = \"https://a.test/x\"\ntls = { ca_file = \"missing.pem\" }\n\
         [[integration]]\nid = \"b\"\nurl = \"https://b.test/x\"\ntls = { cert_file = \"one.pem\", key_file = \"two.key\" }\n\
         [[integration]]\nid = \"c\"\nurl = \"https://c.test/x\"\ntls = { cert_file = \"one.pem\" }\n\
         [[integration]]\nid = \"d\"\nurl = \"https://d.test/x\"\ntls = { server_name = \"d.internal\" }\n\
         [[integration]]\nid = \"e\"\nurl = \"https://e.test/x\"\ntls = { min_version = \"1.1\" }\n\
         [[integration]]\nid = \"f\"\nurl = \"http://f.test/x\"\ntls = { ca_file = \"private-ca.pem\" }\n",
    )
    .unwrap();
    let (code, out, _) = run(alertpost(&prefix).args(["check", "--config", bad.to_str().unwrap()]));
    assert_eq!(code, 2, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    let has = |needle: &str| lines.iter().any(|l| l.contains(needle));
    assert!(
        has("bad.toml:4:19: integration `a`, field `tls.ca_file`: cannot read"),
        "{out}"
    );
    assert!(
        has("bad.toml:8:43: integration `b`, field `tls.key_file`:")
            && has("the key does not match the certificate of cert_file"),
        "{out}"
    );
    assert!(
        has("integration `c`, field `tls.cert_file`: cert_file and key_file go together"),
        "{out}"
    );
    assert!(
        has("integration `d`, field `tls.server_name`: needs a url whose host is an IP address"),
        "{out}"
    );
    assert!(
        has("integration `e`, field `tls.min_version`: `1.1` is not a TLS version"),
        "{out}"
    );
    assert!(
        has("integration `f`, field `tls`: is set, but the url is not https"),
        "{out}"
    );
    assert_eq!(lines.len(), 6, "{out}");
}

/// A reader that hangs up (`alertpost check | head -1`) ends the command
/// quietly: found, a panic with a backtrace; a full disk is an error.
#[test]
fn a_closed_stdout_ends_the_command_without_a_panic() {
    let prefix = TestPrefix::new("cli-stdout");
    let mut child = alertpost(&prefix)
        .args(["check", "--config", &examples("alertpost.toml")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The reading end closed before the command writes anything.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    let full = std::fs::OpenOptions::new().write(true).open("/dev/full");
    if let Ok(full) = full {
        let out = alertpost(&prefix)
            .args(["check", "--config", &examples("alertpost.toml")])
            .stdout(full)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("cannot write to stdout"), "{err}");
    }
}
