//! Metrics, logs and the deploy files.

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use alertpost_event::{Event, Severity, Status};
use alertpost_producer::Producer;
use alertpost_tests::bin::{alertpost, http_get};
use alertpost_tests::metrics::{scrape, value};
use alertpost_tests::{Backend, Receiver, Reply, RunningWorker, TestPrefix, eventually};
use rstest::rstest;

const WAIT: Duration = Duration::from_secs(40);

/// Polls until `series` reaches `value`.
async fn wait_metric(
    addr: std::net::SocketAddr,
    series: &str,
    value: f64,
) -> BTreeMap<String, f64> {
    let deadline = Instant::now() + WAIT;
    loop {
        let m = scrape(addr).await;
        if m.get(series) == Some(&value) {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "{series} = {:?}, waited for {value}; scrape: {:#?}",
            m.get(series),
            m.iter()
                .filter(|(k, v)| k.starts_with("alertpost_") && **v != 0.0)
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[rstest]
#[case::rabbitmq(Backend::RabbitMq)]
#[case::embedded(Backend::Embedded)]
#[tokio::test]
async fn metrics_count_what_the_worker_did(#[case] backend: Backend) {
    let prefix = TestPrefix::with_tiers("metrics", &[1, 5]);
    let receiver = Receiver::start().await;
    receiver.script("/flaky", (0..3).map(|_| Reply::status(503)));
    receiver.script("/bad", (0..3).map(|_| Reply::status(400)));
    let toml = format!(
        r#"[policy]
allow_networks = ["127.0.0.0/8"]
[defaults]
retry = {{ initial = "1s", jitter = 0.0 }}
[[integration]]
id = "ok"
url = "{ok}"
[[integration]]
id = "flaky"
url = "{flaky}"
concurrency = 1
[[integration]]
id = "bad"
url = "{bad}"
[[integration]]
id = "picky"
url = "{ok}"
match = ['labels.team="nobody"']
"#,
        ok = receiver.url("/ok"),
        flaky = receiver.url("/flaky"),
        bad = receiver.url("/bad"),
    );
    let mut worker = RunningWorker::start_on(backend, &prefix, &toml).await;

    // Zeros before anything happens: dashboards show zeros, not gaps.
    let m = scrape(worker.admin).await;
    assert_eq!(
        m[r#"alertpost_deliveries_total{integration="ok",outcome="delivered"}"#],
        0.0
    );
    assert_eq!(
        m[r#"alertpost_retries_scheduled_total{integration="flaky",tier="5s"}"#],
        0.0
    );
    assert_eq!(m["alertpost_broker_connected"], 1.0);

    let events: Vec<Event> = (0..3)
        .map(|i| {
            let mut e = Event::new("metrics-test", Status::Firing, format!("e{i}"));
            e.severity = Some(Severity::High);
            e
        })
        .collect();
    worker.publish_all(events).await;
    // 3 ok + 3 bad + 3 flaky failures + 3 flaky retries.
    receiver.wait_for(12, WAIT).await;
    let m = wait_metric(
        worker.admin,
        r#"alertpost_deliveries_total{integration="flaky",outcome="delivered"}"#,
        3.0,
    )
    .await;
    let expect = [
        (
            r#"alertpost_events_consumed_total{source="metrics-test"}"#,
            3.0,
        ),
        (
            r#"alertpost_deliveries_total{integration="ok",outcome="delivered"}"#,
            3.0,
        ),
        (
            r#"alertpost_deliveries_total{integration="flaky",outcome="retried"}"#,
            3.0,
        ),
        (
            r#"alertpost_deliveries_total{integration="bad",outcome="dead"}"#,
            3.0,
        ),
        (
            r#"alertpost_deliveries_total{integration="picky",outcome="filtered"}"#,
            3.0,
        ),
        (
            r#"alertpost_deliveries_total{integration="ok",outcome="retried"}"#,
            0.0,
        ),
        (
            r#"alertpost_delivery_attempts_total{code="2xx",integration="flaky"}"#,
            3.0,
        ),
        (
            r#"alertpost_delivery_attempts_total{code="5xx",integration="flaky"}"#,
            3.0,
        ),
        (
            r#"alertpost_delivery_attempts_total{code="4xx",integration="bad"}"#,
            3.0,
        ),
        (
            r#"alertpost_retries_scheduled_total{integration="flaky",tier="1s"}"#,
            3.0,
        ),
        (
            r#"alertpost_dead_letters_total{integration="bad",reason="status"}"#,
            3.0,
        ),
        (
            r#"alertpost_delivery_duration_seconds_count{integration="bad"}"#,
            3.0,
        ),
        (
            r#"alertpost_end_to_end_seconds_count{integration="ok"}"#,
            3.0,
        ),
        (
            r#"alertpost_end_to_end_seconds_count{integration="flaky"}"#,
            3.0,
        ),
        (r#"alertpost_inflight_deliveries{integration="ok"}"#, 0.0),
        (r#"alertpost_circuit_open{integration="flaky"}"#, 0.0),
        ("alertpost_broker_connected", 1.0),
    ];
    for (series, value) in expect {
        assert_eq!(m.get(series), Some(&value), "{series}");
    }
    assert!(m["process_resident_memory_bytes"] > 0.0);
    assert!(m.contains_key("alertpost_store_bytes"));
    worker.stop().await.unwrap();
}

#[rstest]
#[case::rabbitmq(Backend::RabbitMq)]
#[case::embedded(Backend::Embedded)]
#[tokio::test]
async fn an_open_circuit_holds_requests_back_and_closes_on_recovery(#[case] backend: Backend) {
    let prefix = TestPrefix::with_tiers("circuit", &[1, 2]);
    let receiver = Receiver::start().await;
    receiver.script("/down", (0..2).map(|_| Reply::status(502)));
    let toml = format!(
        "[policy]\nallow_networks = [\"127.0.0.0/8\"]\n[[integration]]\nid = \"down\"\nurl = \"{}\"\nconcurrency = 1\n\
         retry = {{ initial = \"1s\", jitter = 0.0 }}\ncircuit = {{ failures = 2, cooldown = \"2s\" }}\n",
        receiver.url("/down")
    );
    let mut worker = RunningWorker::start_on(backend, &prefix, &toml).await;
    let events: Vec<Event> = (0..6)
        .map(|i| Event::new("t", Status::Firing, format!("c{i}")))
        .collect();
    worker.publish_all(events).await;
    // Two failures open the circuit; the other four wait without a request.
    wait_metric(
        worker.admin,
        r#"alertpost_circuit_open{integration="down"}"#,
        1.0,
    )
    .await;
    assert_eq!(receiver.count(), 2, "no requests while open");
    // The rest could not start (one at a time, then the circuit): they wait
    // in the integration's lane, not in the delay tiers (counted once their
    // hand-offs are confirmed, which may be a moment after the circuit).
    let deferred = r#"alertpost_deliveries_total{integration="down",outcome="deferred"}"#;
    eventually(WAIT, "four deliveries deferred to the lane", || async {
        let m = scrape(worker.admin).await;
        let n = value(&m, deferred);
        if n >= 4.0 {
            Ok(())
        } else {
            Err(format!("{n}"))
        }
    })
    .await;
    // After the cooldown a probe succeeds, the circuit closes, all arrive.
    let deadline = Instant::now() + WAIT;
    loop {
        let titles: BTreeSet<String> = receiver
            .requests()
            .iter()
            .map(|r| r.json()["title"].as_str().unwrap().to_owned())
            .collect();
        let delivered = scrape(worker.admin).await[r#"alertpost_deliveries_total{integration="down",outcome="delivered"}"#];
        if delivered == 6.0 {
            assert_eq!(titles.len(), 6);
            break;
        }
        assert!(Instant::now() < deadline, "delivered {delivered} of 6");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let m = scrape(worker.admin).await;
    assert_eq!(m[r#"alertpost_circuit_open{integration="down"}"#], 0.0);
    // Two failed attempts and six good ones: the waiting cost no requests,
    // and only the failed attempts were retries.
    assert_eq!(receiver.count(), 8);
    assert_eq!(
        m[r#"alertpost_deliveries_total{integration="down",outcome="retried"}"#],
        2.0
    );
    worker.stop().await.unwrap();
}

#[rstest]
#[case::rabbitmq(Backend::RabbitMq)]
#[case::embedded(Backend::Embedded)]
#[tokio::test]
async fn a_reload_keeps_an_open_circuit_open_unless_its_settings_change(#[case] backend: Backend) {
    let prefix = TestPrefix::with_tiers("circuit-reload", &[1, 2]);
    let receiver = Receiver::start().await;
    receiver.script("/down", [Reply::status(502)]);
    let toml = |cooldown: &str, extra: &str| {
        format!(
            "[policy]\nallow_networks = [\"127.0.0.0/8\"]\n[[integration]]\nid = \"down\"\nurl = \"{}\"\n\
             retry = {{ initial = \"1s\", jitter = 0.0 }}\ncircuit = {{ failures = 1, cooldown = \"{cooldown}\" }}\n{extra}",
            receiver.url("/down")
        )
    };
    let mut worker = RunningWorker::start_on(backend, &prefix, &toml("60s", "")).await;
    let event = |title: &str| Event::new("t", Status::Firing, title);
    worker.publish(event("first")).await;
    wait_metric(
        worker.admin,
        r#"alertpost_circuit_open{integration="down"}"#,
        1.0,
    )
    .await;
    let open = r#"alertpost_circuit_open{integration="down"}"#;

    // Another integration added: "down" is unchanged, its circuit stays open
    // and a new event waits without a request.
    worker
        .reload(&toml(
            "60s",
            "[[integration]]\nid = \"other\"\nurl = \"http://127.0.0.1:9/\"\nmatch = ['source=\"none\"']\n",
        ))
        .await;
    worker.publish(event("second")).await;
    // "second" goes to the lane (the circuit is open) and waits there; so
    // does the retry of "first" when it comes back from its delay tier.
    let deferred = r#"alertpost_deliveries_total{integration="down",outcome="deferred"}"#;
    let deadline = Instant::now() + WAIT;
    loop {
        let m = scrape(worker.admin).await;
        assert_eq!(m[open], 1.0, "a reload does not close an open circuit");
        if m.get(deferred).copied().unwrap_or(0.0) >= 2.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the held-back delivery waits in its lane"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    receiver.assert_no_more(1, Duration::from_millis(500)).await;

    // A new circuit policy is a new circuit: a new event goes out at once
    // (the held-back ones keep the time they were given).
    worker.reload(&toml("1s", "")).await;
    wait_metric(worker.admin, open, 0.0).await;
    worker.publish(event("third")).await;
    receiver.wait_for(2, WAIT).await;
    assert_eq!(receiver.requests()[1].json()["title"], "third");
    worker.stop().await.unwrap();
}

#[tokio::test]
async fn json_logs_carry_one_line_per_delivery_outcome() {
    let prefix = TestPrefix::new("logs");
    prefix.register_lanes(["hook"]);
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "[policy]\nallow_networks = [\"127.0.0.0/8\"]\n[[integration]]\nid = \"hook\"\nurl = \"{}\"\nauth = {{ type = \"bearer\", token = \"t0ken-n0t-for-logs\" }}\n",
            receiver.url("/hook")
        ),
    )
    .unwrap();
    let mut worker = alertpost(&prefix)
        .args([
            "worker",
            "--config",
            config.to_str().unwrap(),
            "--admin-addr",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = worker.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let e = Producer::connect(&prefix.url, &prefix.prefix, "t")
        .await
        .unwrap()
        .publish(Event::new("t", Status::Firing, "logged"))
        .await
        .unwrap();
    receiver.wait_for(1, WAIT).await;
    let deadline = Instant::now() + WAIT;
    let line = loop {
        let line = rx
            .recv_timeout(Duration::from_millis(200))
            .unwrap_or_default();
        if line.contains("\"outcome\":\"delivered\"") {
            break line;
        }
        assert!(Instant::now() < deadline, "no delivery line in the log");
    };
    let v: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    assert_eq!(v["level"], "INFO");
    assert_eq!(v["status"], 200);
    assert!(v["duration_ms"].is_u64(), "{v}");
    let span = &v["span"];
    assert_eq!(span["event_id"], e.id.as_str());
    assert_eq!(
        span["delivery_id"],
        alertpost_event::delivery_id(&e.id, "hook")
    );
    assert_eq!(span["integration"], "hook");
    assert_eq!(span["attempt"], 1);
    let _ = Command::new("kill")
        .args(["-TERM", &worker.id().to_string()])
        .status();
    worker.wait().unwrap();
    let rest: Vec<String> = rx.try_iter().collect();
    assert!(
        !rest
            .iter()
            .chain(std::iter::once(&line))
            .any(|l| l.contains("t0ken-n0t-for-logs"))
    );
}

fn deploy(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(path)
}

fn python() -> String {
    let p = format!(
        "{}/../target/test-python/bin/python",
        env!("CARGO_MANIFEST_DIR")
    );
    assert!(
        std::path::Path::new(&p).exists(),
        "{p} is missing: run scripts/ensure-test-tools.sh (make test does)"
    );
    p
}

#[test]
fn every_deploy_file_parses() {
    let mut yaml = Vec::new();
    let mut stack = vec![deploy("")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().map(Result::unwrap) {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "yml" || e == "yaml") {
                yaml.push(path);
            } else if path.extension().is_some_and(|e| e == "json") {
                let text = std::fs::read_to_string(&path).unwrap();
                serde_json::from_str::<serde_json::Value>(&text)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            }
        }
    }
    assert!(yaml.len() >= 12, "{yaml:?}");
    let script = "import sys, yaml\nfor p in sys.argv[1:]:\n    docs = [d for d in yaml.safe_load_all(open(p)) if d is not None]\n    assert docs, p\n    for d in docs:\n        assert isinstance(d, dict), p\n        if '/kubernetes/' in p and not p.endswith('kustomization.yaml'):\n            assert d.get('apiVersion') and d.get('kind') and d.get('metadata', {}).get('name'), (p, d.get('kind'))\nprint(len(sys.argv) - 1)\n";
    let out = Command::new(python())
        .arg("-c")
        .arg(script)
        .args(&yaml)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Prometheus's own checker, from Debian's `prometheus` package.
    for (what, file) in [
        ("rules", "prometheus/alerts.yml"),
        ("config", "prometheus/prometheus.yml"),
    ] {
        let out = Command::new("promtool")
            .args(["check", what])
            .arg(deploy(file))
            .output()
            .expect("promtool is installed (Debian package prometheus; make test does it)");
        assert!(
            out.status.success(),
            "promtool check {what}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(deploy("grafana/alertpost.json")).unwrap())
            .unwrap();
    let titles: Vec<&str> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    for wanted in [
        "Deliveries/s by outcome",
        "Success ratio by integration",
        "Attempt latency",
        "End-to-end latency (received → delivered)",
        "Retries scheduled by tier",
        "Dead letters by reason",
        "In flight",
        "Circuit open",
        "Queue depth (ready messages)",
        "Worker memory (RSS)",
    ] {
        assert!(titles.contains(&wanted), "no panel {wanted}: {titles:?}");
    }
}

/// Every `alertpost_*` name in the text (histogram suffixes removed).
fn names_in(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("alertpost_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let mut name = tail[..end].to_owned();
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = name.strip_suffix(suffix) {
                name = base.to_owned();
            }
        }
        // `alertpost_` inside a longer word (e.g. a job name) is not a metric.
        let before = rest[..i].chars().next_back();
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.') {
            names.insert(name);
        }
        rest = &tail[end..];
    }
    names
}

#[tokio::test]
async fn the_dashboard_and_alerts_use_only_names_alertpost_exports() {
    let prefix = TestPrefix::new("names");
    let receiver = Receiver::start().await;
    let toml = format!(
        "[policy]\nallow_networks = [\"127.0.0.0/8\"]\n[[integration]]\nid = \"x\"\nurl = \"{}\"\n",
        receiver.url("/x")
    );
    let mut worker = RunningWorker::start(&prefix, &toml).await;
    let ingest = alertpost_tests::start_ingest(&prefix.url, prefix.topology.clone()).await;
    // Families with a label appear once a series has a value: one event
    // through the ingest and the worker gives every source-labelled one.
    let r = reqwest::Client::new()
        .post(format!("http://{ingest}/v1/events"))
        .body(r#"{"source":"names","status":"firing","title":"t"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    receiver.wait_for(1, WAIT).await;
    let mut exported: BTreeSet<String> = BTreeSet::new();
    for addr in [worker.admin, ingest] {
        let (status, body) = http_get(addr, "/metrics").await.unwrap();
        assert_eq!(status, 200);
        exported.extend(
            body.lines()
                .filter_map(|l| l.strip_prefix("# TYPE "))
                .map(|l| l.split(' ').next().unwrap().to_owned()),
        );
    }
    let used: BTreeSet<String> = ["grafana/alertpost.json", "prometheus/alerts.yml"]
        .iter()
        .flat_map(|f| names_in(&std::fs::read_to_string(deploy(f)).unwrap()))
        .collect();
    assert!(used.len() >= 10, "{used:?}");
    let missing: Vec<&String> = used.difference(&exported).collect();
    assert!(
        missing.is_empty(),
        "used but not exported: {missing:?}\nexported: {exported:?}"
    );
    worker.stop().await.unwrap();
}

/// `?limit=` on the admin API is capped (found unbounded: one request
/// could ask the store for every record at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_caps_what_one_request_reads() {
    use alertpost_store::{AttemptOutcome, AttemptRecord};
    let prefix = TestPrefix::new("admin-limit");
    let toml = "[policy]\nallow_networks = [\"127.0.0.0/8\"]\n[[integration]]\nid = \"hook\"\nurl = \"http://127.0.0.1:9/\"\n";
    let mut worker = RunningWorker::start_on(Backend::Embedded, &prefix, toml).await;
    let now = time::OffsetDateTime::now_utc();
    for n in 0..1500u32 {
        worker.store.record(AttemptRecord {
            delivery_id: "dlv_cap".to_owned(),
            event_id: "evt_cap".to_owned(),
            integration: "hook".to_owned(),
            attempt: n + 1,
            started_at: now,
            duration_ms: 1,
            outcome: AttemptOutcome::Retry,
            code: alertpost_event::job::AttemptCode::ServerError,
            status: Some(503),
            response_headers: Vec::new(),
            response_body: None,
            error: None,
            request: None,
        });
    }
    let count = || async {
        let (status, body) = alertpost_tests::bin::http_get(
            worker.admin,
            "/v1/attempts?event_id=evt_cap&limit=100000",
        )
        .await
        .unwrap();
        assert_eq!(status, 200);
        serde_json::from_str::<Vec<serde_json::Value>>(&body)
            .unwrap()
            .len()
    };
    // Written by the store's writer within a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    while count().await < 1000 {
        assert!(Instant::now() < deadline, "records not written");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(count().await, alertpost_admin::MAX_LIMIT);
    worker.stop().await.unwrap();
}

/// Operational events: a circuit that opens raises `error` and, once the
/// integration delivers again, `active` (resolved, the same dedup key),
/// delivered to the integration that opted in with
/// `kinds = ["integration.status"]` and to no other; a dead letter while
/// the circuit is closed raises `warning`. Nothing raised twice.
#[rstest]
#[case::rabbitmq(Backend::RabbitMq)]
#[case::embedded(Backend::Embedded)]
#[tokio::test]
async fn a_state_change_raises_one_operational_event(#[case] backend: Backend) {
    let prefix = TestPrefix::with_tiers("operational", &[1, 2]);
    let receiver = Receiver::start().await;
    // Two failures open the circuit; then it answers 200; later one 410
    // (dead at once) raises a warning.
    receiver.script("/flaky", (0..2).map(|_| Reply::status(502)));
    let toml = format!(
        "[policy]\nallow_networks = [\"127.0.0.0/8\"]\n\
         [[integration]]\nid = \"flaky\"\nurl = \"{}\"\nconcurrency = 1\nmatch = ['labels.team=\"flaky\"']\n\
         retry = {{ initial = \"1s\", jitter = 0.0 }}\ncircuit = {{ failures = 2, cooldown = \"2s\" }}\n\
         [[integration]]\nid = \"ops\"\nurl = \"{}\"\nkinds = [\"integration.status\"]\n\
         [[integration]]\nid = \"plain\"\nurl = \"{}\"\nmatch = ['labels.team!=\"flaky\"']\n",
        receiver.url("/flaky"),
        receiver.url("/ops"),
        receiver.url("/plain"),
    );
    let mut worker = RunningWorker::start_on(backend, &prefix, &toml).await;
    let flaky = |title: &str| {
        let mut e = Event::new("t", Status::Firing, title);
        e.labels.insert("team".into(), "flaky".into());
        e
    };
    worker
        .publish_all((0..3).map(|i| flaky(&format!("f{i}"))).collect())
        .await;
    let ops = |receiver: &Receiver| -> Vec<serde_json::Value> {
        receiver
            .requests_to("/ops")
            .iter()
            .map(|r| r.json())
            .collect()
    };
    let seen = eventually(WAIT, "error, then active", || async {
        let seen = ops(&receiver);
        if seen.len() >= 2 {
            Ok(seen)
        } else {
            Err(format!("{seen:?}"))
        }
    })
    .await;
    let states: Vec<&str> = seen
        .iter()
        .map(|e| e["data"]["state"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(states, ["error", "active"], "{seen:#?}");
    assert_eq!(seen[0]["status"], "firing");
    assert_eq!(seen[1]["status"], "resolved");
    for e in &seen {
        assert_eq!(e["source"], "alertpost");
        assert_eq!(e["kind"], "integration.status");
        assert_eq!(e["dedup_key"], "alertpost.integration.flaky");
        assert_eq!(e["data"]["integration"], "flaky");
    }
    assert!(
        seen[0]["data"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("circuit open")),
        "{}",
        seen[0]
    );
    // Every one of the three delivered first (the lane's others follow
    // the probe that raised `active`), so nothing else is still arriving.
    eventually(WAIT, "the three delivered", || async {
        let n = receiver
            .requests_to("/flaky")
            .iter()
            .filter(|r| r.status == 200)
            .count();
        if n == 3 {
            Ok(())
        } else {
            Err(format!("{n} delivered"))
        }
    })
    .await;
    // A dead letter while the circuit is closed: a warning.
    receiver.script("/flaky", [Reply::status(410)]);
    worker.publish(flaky("gone")).await;
    let seen = eventually(WAIT, "a warning", || async {
        let seen = ops(&receiver);
        if seen.len() >= 3 {
            Ok(seen)
        } else {
            Err(format!("{} so far", seen.len()))
        }
    })
    .await;
    assert_eq!(seen[2]["data"]["state"], "warning", "{}", seen[2]);
    assert_eq!(seen[2]["status"], "firing");
    receiver
        .assert_no_more(receiver.count(), Duration::from_millis(500))
        .await;
    assert_eq!(ops(&receiver).len(), 3, "one event per change");
    // Its filter would take them (they have no team): its kinds do not.
    assert!(
        receiver.requests_to("/plain").is_empty(),
        "integrations that do not opt in get no operational events"
    );
    worker.stop().await.unwrap();
}

/// `GET /openapi.json` on the admin address: the admin API's OpenAPI 3.1
/// document, which `openapi-spec-validator` (PyPI) accepts, with every
/// route and the dead queue's types (rows, letters, replay, purge).
#[tokio::test]
async fn the_admin_openapi_document_validates() {
    let prefix = TestPrefix::new("admin-openapi");
    let receiver = Receiver::start().await;
    let toml = format!(
        "[policy]\nallow_networks = [\"127.0.0.0/8\"]\n[[integration]]\nid = \"hook\"\nurl = \"{}\"\n",
        receiver.url("/hook")
    );
    let mut worker = RunningWorker::start(&prefix, &toml).await;
    let (status, text) = http_get(worker.admin, "/openapi.json")
        .await
        .expect("the admin server answers");
    assert_eq!(status, 200);
    let doc: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    for path in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/v1/attempts",
        "/v1/dead-letters",
        "/v1/dlq",
        "/v1/dlq/{id}",
        "/v1/dlq/replay",
        "/v1/dlq/purge",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} is described");
    }
    for schema in [
        "DlqRow",
        "DeadInFull",
        "DeadLetter",
        "DeliveryJob",
        "AttemptRecord",
        "Event",
        "Which",
        "Replayed",
    ] {
        assert!(
            doc["components"]["schemas"].get(schema).is_some(),
            "{schema} is a component"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("admin.openapi.json");
    std::fs::write(&file, &text).unwrap();
    let validator = format!(
        "{}/../target/test-python/bin/openapi-spec-validator",
        env!("CARGO_MANIFEST_DIR")
    );
    let out = Command::new(&validator)
        .arg(&file)
        .output()
        .expect("the validator runs (scripts/ensure-test-tools.sh installs it)");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    worker.stop().await.unwrap();
}
