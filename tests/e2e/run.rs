//! `alertpost run`: the ingest and a worker in one process on the embedded
//! queue, no RabbitMQ. What the ingest accepted (202) survives kill -9 and
//! is delivered after a restart on the same data directory.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use alertpost_event::delivery_id;
use alertpost_tests::bin::{alertpost_path, http_get};
use alertpost_tests::{Receiver, Reply};

const WAIT: Duration = Duration::from_secs(30);

fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("can bind");
    l.local_addr().expect("bound")
}

struct Run {
    child: Child,
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(
    config: &std::path::Path,
    data: &std::path::Path,
    listen: SocketAddr,
    admin: SocketAddr,
) -> Run {
    let child = Command::new(alertpost_path())
        .arg("run")
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(data)
        .arg("--listen")
        .arg(listen.to_string())
        .arg("--admin-addr")
        .arg(admin.to_string())
        // No broker anywhere: a URL that cannot be reached proves none is used.
        .env("ALERTPOST_AMQP_URL", "amqp://guest:guest@127.0.0.1:1/%2f")
        .env_remove("ALERTPOST_CONFIG")
        .stderr(Stdio::null())
        .spawn()
        .expect("alertpost run starts");
    Run { child }
}

async fn ready(addr: SocketAddr) {
    let deadline = Instant::now() + WAIT;
    while http_get(addr, "/readyz").await.map(|(s, _)| s) != Some(200) {
        assert!(Instant::now() < deadline, "{addr} not ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// POSTs one event; its id if accepted (202).
async fn post(client: &reqwest::Client, ingest: SocketAddr, i: usize) -> Option<String> {
    let body = format!(r#"{{"source":"run","status":"firing","title":"e{i}"}}"#);
    let r = client
        .post(format!("http://{ingest}/v1/events"))
        .header("content-type", "application/json")
        .body(body)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .ok()?;
    if r.status().as_u16() != 202 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.ok()?).ok()?;
    v["ids"][0].as_str().map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertpost_run_delivers_without_rabbitmq_and_loses_nothing_to_kill_9() {
    let receiver = Receiver::start().await;
    // Some first answers fail: retries wait in the queue's due-time index
    // when the process is killed.
    receiver.script("/hook", (0..10).map(|_| Reply::status(503)));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("run.toml");
    std::fs::write(
        &config,
        format!(
            "[policy]\nallow_networks = [\"127.0.0.0/8\"]\n[[integration]]\nid = \"hook\"\nurl = \"{}\"\nretry = {{ initial = \"1s\", jitter = 0.0 }}\n",
            receiver.url("/hook")
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let (listen, admin) = (free_port(), free_port());
    let mut run = start(&config, &data, listen, admin);
    ready(admin).await;
    ready(listen).await;
    let client = reqwest::Client::new();
    let mut accepted = BTreeSet::new();
    let mut i = 0;
    while accepted.len() < 300 {
        if accepted.len() == 150 && i < 10_000 {
            // SIGKILL in the middle of the stream; then the same data dir.
            run.child.kill().unwrap();
            run.child.wait().unwrap();
            run = start(&config, &data, listen, admin);
            ready(listen).await;
            i = 10_000;
        }
        if let Some(id) = post(&client, listen, i).await {
            accepted.insert(delivery_id(&id, "hook"));
        }
        i += 1;
    }
    receiver.wait_delivered(&accepted, WAIT).await;
    drop(run);
}

/// `alertpost dlq --admin` against `alertpost run`, whose queue (and so its
/// dead letters) only the running process can reach: with the token from
/// the config's environment, listed, replayed once the receiver is fixed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_through_the_admin_api_of_alertpost_run() {
    const TOKEN: &str = "run-admin-token-abcdefghijkl";
    let receiver = Receiver::start().await;
    receiver.script("/hook", [Reply::status(410)]);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("run.toml");
    std::fs::write(
        &config,
        format!(
            "[admin]\ntoken = \"${{RUN_ADMIN_TOKEN}}\"\n[policy]\nallow_networks = [\"127.0.0.0/8\"]\n[[integration]]\nid = \"hook\"\nurl = \"{}\"\n",
            receiver.url("/hook")
        ),
    )
    .unwrap();
    let (listen, admin) = (free_port(), free_port());
    let child = Command::new(alertpost_path())
        .args(["run", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args([
            "--listen",
            &listen.to_string(),
            "--admin-addr",
            &admin.to_string(),
        ])
        .env("RUN_ADMIN_TOKEN", TOKEN)
        .env_remove("ALERTPOST_CONFIG")
        .stderr(Stdio::null())
        .spawn()
        .expect("alertpost run starts");
    let _run = Run { child };
    ready(admin).await;
    let id = post(&reqwest::Client::new(), listen, 1)
        .await
        .expect("accepted");
    let dlq = |args: &[&str]| {
        let out = Command::new(alertpost_path())
            .args(["dlq", "--admin", &admin.to_string()])
            .args(args)
            .env("ALERTPOST_ADMIN_TOKEN", TOKEN)
            .env("ALERTPOST_AMQP_URL", "amqp://guest:guest@127.0.0.1:1/%2f")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let deadline = Instant::now() + WAIT;
    loop {
        let rows: Vec<serde_json::Value> = serde_json::from_str(&dlq(&["list", "--json"])).unwrap();
        if let Some(row) = rows.first() {
            assert_eq!(row["event_id"], id.as_str());
            assert_eq!(row["reason"], "status");
            break;
        }
        assert!(Instant::now() < deadline, "no dead letter");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(dlq(&["replay", "--all"]).contains("replayed 1 dead letters"));
    let got = receiver.wait_for(2, WAIT).await;
    assert_eq!(got[1].status, 200);
    assert_eq!(dlq(&["list"]).trim(), "no dead letters");
}
