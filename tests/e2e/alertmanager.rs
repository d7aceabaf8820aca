//! The real Prometheus Alertmanager (Debian's `prometheus-alertmanager`)
//! sending its webhooks to `alertpost ingest`: firing, then resolved.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use alertpost_tests::{Receiver, RunningWorker, TestPrefix};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

struct Alertmanager {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("bound").port()
}

/// Alertmanager sending to `webhook` with HTTP Basic, the ingest token as
/// its password (what a webhook config can carry).
async fn start_alertmanager(webhook: &str, token: &str) -> Alertmanager {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("alertmanager.yml");
    std::fs::write(
        &config,
        format!(
            "route:\n  receiver: alertpost\n  group_by: ['alertname']\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\n\
             receivers:\n  - name: alertpost\n    webhook_configs:\n      - url: {webhook}\n        send_resolved: true\n        http_config:\n          basic_auth:\n            username: alertmanager\n            password: {token}\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let binary = ["prometheus-alertmanager", "alertmanager"]
        .into_iter()
        .find(|b| Command::new(b).arg("--version").output().is_ok())
        .expect("Alertmanager is installed (Debian: apt-get install prometheus-alertmanager; `make test` does it)");
    let child = Command::new(binary)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("Alertmanager starts");
    let url = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Ok(r) = client.get(format!("{url}/-/ready")).send().await
            && r.status().is_success()
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "Alertmanager did not get ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Alertmanager {
        child,
        url,
        _dir: dir,
    }
}

async fn post_alerts(am: &Alertmanager, alerts: Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/api/v2/alerts", am.url))
        .header("content-type", "application/json")
        .body(alerts.to_string())
        .send()
        .await
        .unwrap();
    assert!(
        r.status().is_success(),
        "Alertmanager took the alerts: {}",
        r.status()
    );
}

fn alerts(ends_at: Option<&str>) -> Value {
    let now = time::OffsetDateTime::now_utc();
    let starts = (now - time::Duration::minutes(5))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let one = |instance: &str| {
        let mut a = json!({
            "labels": {"alertname": "DiskFull", "instance": instance, "severity": "critical", "team": "db"},
            "annotations": {"summary": format!("Disk full on {instance}"), "runbook_url": "https://runbooks.example.com/disk"},
            "startsAt": starts,
            "generatorURL": "http://prometheus.example.com/graph?g0.expr=disk"
        });
        if let Some(ends) = ends_at {
            a["endsAt"] = json!(ends);
        }
        a
    };
    json!([one("db-1"), one("db-2")])
}

#[tokio::test]
async fn alertmanager_webhooks_arrive_as_events_firing_then_resolved() {
    let prefix = TestPrefix::new("alertmanager");
    let receiver = Receiver::start().await;
    let toml = format!(
        "[policy]\nallow_networks = [\"127.0.0.0/8\"]\n[[integration]]\nid = \"hook\"\nurl = \"{}\"\n",
        receiver.url("/hook")
    );
    let mut worker = RunningWorker::start(&prefix, &toml).await;
    // The ingest wants a token; Alertmanager sends it as Basic.
    let token = "alertmanager-token-0123456789";
    let settings = alertpost_config::IngestSettings {
        tokens: vec![alertpost_config::Secret::new(token)],
        ..Default::default()
    };
    let ingest: SocketAddr =
        alertpost_tests::start_ingest_with(&prefix.url, prefix.topology.clone(), settings).await;

    let am = start_alertmanager(&format!("http://{ingest}/v1/ingest/alertmanager"), token).await;
    post_alerts(&am, alerts(None)).await;
    let firing = receiver.wait_for(2, WAIT).await;
    let firing: Vec<Value> = firing.iter().map(|r| r.json()).collect();
    for e in &firing {
        assert_eq!(e["source"], "prometheus");
        assert_eq!(e["status"], "firing");
        assert_eq!(e["severity"], "critical");
        assert_eq!(e["labels"]["alertname"], "DiskFull");
        assert_eq!(e["labels"]["team"], "db");
        let instance = e["labels"]["instance"].as_str().unwrap();
        assert_eq!(e["title"], format!("Disk full on {instance}"));
        assert_eq!(
            e["links"][0]["href"],
            "http://prometheus.example.com/graph?g0.expr=disk"
        );
        assert_eq!(e["links"][1]["text"], "Runbook");
        assert_eq!(
            e["dedup_key"].as_str().unwrap().len(),
            16,
            "Alertmanager's fingerprint: {e}"
        );
        assert_eq!(e["data"]["receiver"], "alertpost");
        assert!(e["occurred_at"].is_string());
        assert!(e.get("resolved_at").is_none());
    }

    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    post_alerts(&am, alerts(Some(&now))).await;
    let all = receiver.wait_for(4, WAIT).await;
    let resolved: Vec<Value> = all[2..].iter().map(|r| r.json()).collect();
    for e in &resolved {
        assert_eq!(e["status"], "resolved", "{e}");
        assert!(e["resolved_at"].is_string());
        let instance = &e["labels"]["instance"];
        let before = firing
            .iter()
            .find(|f| &f["labels"]["instance"] == instance)
            .unwrap();
        assert_eq!(
            e["dedup_key"], before["dedup_key"],
            "one alert, one dedup key"
        );
        assert_ne!(e["id"], before["id"], "each notification is its own event");
    }
    worker.stop().await.unwrap();
}
