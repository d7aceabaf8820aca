//! `POST /v1/events` and `/v1/ingest/<format>` over the real broker.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use alertpost_seam::Topology;
use alertpost_tests::{Receiver, RunningWorker, TestPrefix};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

/// Starts the ingest for `topology` on 127.0.0.1:0; it stops with the test.
async fn ingest(url: &str, topology: Topology) -> SocketAddr {
    alertpost_tests::start_ingest(url, topology).await
}

async fn post(addr: SocketAddr, path: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("http://{addr}{path}"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap_or_default();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, body)
}

fn payload(name: &str) -> String {
    let path = format!(
        "{}/../examples/payloads/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[tokio::test]
async fn every_format_is_ingested_and_delivered() {
    let prefix = TestPrefix::new("ingest-formats");
    let receiver = Receiver::start().await;
    let toml = format!(
        "[policy]\nallow_networks = [\"127.0.0.0/8\"]\n[[integration]]\nid = \"hook\"\nurl = \"{}\"\n",
        receiver.url("/hook")
    );
    let mut worker = RunningWorker::start(&prefix, &toml).await;
    let addr = ingest(&prefix.url, prefix.topology.clone()).await;

    // (format, events in the sample, the events' source)
    let formats = [
        ("alertmanager", 2, "prometheus"),
        ("grafana", 1, "grafana"),
        ("hertzbeat", 1, "hertzbeat"),
        ("grafana-oncall", 1, "grafana-oncall"),
        ("aporia", 1, "aporia"),
    ];
    let mut expected = BTreeMap::new();
    for (format, count, source) in formats {
        let (status, body) = post(addr, &format!("/v1/ingest/{format}"), payload(format)).await;
        assert_eq!(status, 202, "{format}: {body}");
        assert_eq!(body["accepted"], count, "{format}: {body}");
        for id in body["ids"].as_array().unwrap() {
            expected.insert(id.as_str().unwrap().to_owned(), source);
        }
    }
    let (status, body) = post(
        addr,
        "/v1/events",
        json!([{"source": "app", "status": "firing", "title": "a"},
               {"source": "app", "status": "resolved", "title": "a"}])
        .to_string(),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    for id in body["ids"].as_array().unwrap() {
        expected.insert(id.as_str().unwrap().to_owned(), "app");
    }

    let requests = receiver.wait_for(expected.len(), WAIT).await;
    receiver
        .assert_no_more(expected.len(), Duration::from_millis(300))
        .await;
    let got: BTreeMap<String, &'static str> = requests
        .iter()
        .map(|r| {
            let body = r.json();
            let source = expected[body["id"].as_str().unwrap()];
            assert_eq!(body["source"], source);
            (body["id"].as_str().unwrap().to_owned(), source)
        })
        .collect();
    assert_eq!(got, expected);

    // Spot checks of what the normalizers carried through.
    let by_source = |s: &str| {
        requests
            .iter()
            .map(|r| r.json())
            .filter(|b| b["source"] == s)
            .collect::<Vec<_>>()
    };
    let am = by_source("prometheus");
    assert!(
        am.iter()
            .any(|b| b["status"] == "resolved" && b["dedup_key"] == "a1b2c3d4e5f60718")
    );
    assert_eq!(by_source("hertzbeat")[0]["severity"], "critical");
    assert_eq!(
        by_source("grafana-oncall")[0]["dedup_key"],
        "08d6891a-835c-e661-39fa-96b6a9e26552"
    );
    assert_eq!(by_source("aporia")[0]["labels"]["model_id"], "churn-v3");
    assert_eq!(by_source("grafana")[0]["links"][1]["text"], "Dashboard");
    worker.stop().await.unwrap();
}

#[tokio::test]
async fn bad_input_is_refused_with_a_reason_and_nothing_is_published() {
    let prefix = TestPrefix::new("ingest-bad");
    prefix.declare().await;
    let addr = ingest(&prefix.url, prefix.topology.clone()).await;
    let big = format!(
        "{{\"source\":\"s\",\"status\":\"firing\",\"message\":\"{}\"}}",
        "x".repeat(5 * 1024 * 1024)
    );
    let one_too_big = format!(
        "[{{\"source\":\"s\",\"status\":\"firing\",\"title\":\"ok\"}},{{\"source\":\"s\",\"status\":\"firing\",\"message\":\"{}\"}}]",
        "x".repeat(300 * 1024)
    );
    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("/v1/events", "{not json".into(), 400, "invalid JSON"),
        ("/v1/events", "[]".into(), 400, "no events"),
        (
            "/v1/events",
            json!({"source": "s", "status": "on"}).to_string(),
            400,
            "unknown variant `on`",
        ),
        (
            "/v1/events",
            json!([{"source": "s", "status": "firing", "title": "ok"}, {"status": "firing"}])
                .to_string(),
            400,
            "event 1: ",
        ),
        (
            "/v1/events",
            json!({"source": "s", "status": "firing"}).to_string(),
            400,
            "field `title`: required",
        ),
        (
            "/v1/ingest/nagios",
            "{}".into(),
            404,
            "unknown format `nagios`",
        ),
        (
            "/v1/ingest/alertmanager",
            json!({"alerts": []}).to_string(),
            400,
            "`alerts` is empty",
        ),
        (
            "/v1/ingest/hertzbeat",
            json!({"status": 0}).to_string(),
            400,
            "`content` is missing",
        ),
        // Accepted, then lost (year −1 in UTC), or a panic (year 10000).
        (
            "/v1/events",
            json!({"source": "s", "status": "firing", "title": "t", "occurred_at": "0000-01-01T00:00:00+00:01"}).to_string(),
            400,
            "field `occurred_at`: out of range",
        ),
        (
            "/v1/events",
            json!({"source": "s", "status": "firing", "title": "t", "occurred_at": "9999-12-31T23:59:59-00:01"}).to_string(),
            400,
            "field `occurred_at`: out of range",
        ),
        (
            "/v1/ingest/hertzbeat",
            json!({"status": 0, "content": "c", "firstTriggerTime": -62_167_219_200_001_i64, "labels": {"alertname": "a"}}).to_string(),
            400,
            "field `occurred_at`: out of range",
        ),
        // A group's fields copied into each of many alerts: refused before
        // any copy (found: 1 MiB × 40 000 alerts killed the ingest).
        (
            "/v1/ingest/alertmanager",
            json!({"groupKey": "k".repeat(1024 * 1024), "alerts": vec![json!({"status": "firing", "labels": {"alertname": "a"}}); 40]}).to_string(),
            400,
            "copied into each",
        ),
        ("/v1/events", big, 413, "over the 4194304-byte limit"),
        ("/v1/events", one_too_big, 413, "over the 262144-byte limit"),
    ];
    for (path, body, status, reason) in cases {
        let (got, answer) = post(addr, path, body).await;
        assert_eq!(got, status, "{path}: {answer}");
        let error = answer["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{path}: no JSON error: {answer}"));
        assert!(error.contains(reason), "{path}: {error}");
    }
    let events_queue = prefix.topology.events_queue();
    assert_eq!(
        prefix.ready(&events_queue).await,
        0,
        "nothing was published"
    );

    // The same server does publish valid input: the zero above means something.
    let (status, _) = post(
        addr,
        "/v1/events",
        json!({"source": "s", "status": "firing", "title": "t"}).to_string(),
    )
    .await;
    assert_eq!(status, 202);
    assert_eq!(prefix.ready(&events_queue).await, 1);
}

#[tokio::test]
async fn an_unreachable_broker_is_a_503() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("amqp://guest:guest@127.0.0.1:{port}/%2f");
    let addr = ingest(&url, Topology::new("t-unreachable").unwrap()).await;
    let (status, body) = post(
        addr,
        "/v1/events",
        json!({"source": "s", "status": "firing", "title": "t"}).to_string(),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("RabbitMQ is unavailable"), "{error}");
    assert!(
        !error.contains("guest") && !error.contains("127.0.0.1") && !error.contains("amqp"),
        "nothing of the broker's address in answers to callers: {error}"
    );
    let (status, ready) = alertpost_tests::bin::http_get(addr, "/readyz")
        .await
        .unwrap();
    assert_eq!(status, 503);
    assert!(
        ready.contains("unreachable") && !ready.contains("127.0.0.1"),
        "{ready}"
    );
    let (status, _) = alertpost_tests::bin::http_get(addr, "/healthz")
        .await
        .unwrap();
    assert_eq!(status, 200);
}

/// `[ingest] tokens`, the bound on requests at once, and clients that send
/// slowly or not at all: the contract of issue 15.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_the_request_bound_and_slow_clients() {
    use base64::Engine;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let prefix = TestPrefix::new("ingest-auth");
    prefix.declare().await;
    let config = alertpost_config::parse(
        "[ingest]\ntokens = [\"first-token-0123456789\", \"${SECOND}\"]\nmax_concurrent = 1\n",
        "ingest.toml",
        &|name| (name == "SECOND").then(|| "second-token-0123456789".to_owned()),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let bounds = alertpost_ingest::Bounds {
        header: Duration::from_millis(500),
        body: Duration::from_secs(3),
        shutdown: Duration::from_millis(300),
    };
    let server = tokio::spawn(alertpost_ingest::serve_bounded(
        listener,
        alertpost_producer::Producer::lazy(&prefix.url, prefix.topology.clone(), "test-ingest"),
        config.ingest,
        bounds,
        async move {
            let _ = stopped.await;
        },
    ));
    let client = reqwest::Client::new();
    let body = json!({"source": "s", "status": "firing", "title": "t"}).to_string();
    let send = |auth: Option<String>| {
        let mut request = client
            .post(format!("http://{addr}/v1/events"))
            .header("content-type", "application/json")
            .body(body.clone());
        if let Some(a) = auth {
            request = request.header("authorization", a);
        }
        async move { request.send().await.unwrap().status().as_u16() }
    };
    let basic = |user: &str, password: &str| {
        let pair = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        Some(format!("Basic {pair}"))
    };
    for refused in [
        None,
        Some("Bearer first-token-012345678".to_owned()),
        Some("Bearer first-token-0123456789x".to_owned()),
        Some("first-token-0123456789".to_owned()),
        basic("first-token-0123456789", "wrong"),
        Some("Basic not-base64!".to_owned()),
    ] {
        assert_eq!(send(refused.clone()).await, 401, "{refused:?}");
    }
    let events_queue = prefix.topology.events_queue();
    assert_eq!(prefix.ready(&events_queue).await, 0, "nothing published");
    for accepted in [
        Some("Bearer first-token-0123456789".to_owned()),
        Some("bearer second-token-0123456789".to_owned()),
        basic("alertmanager", "second-token-0123456789"),
    ] {
        assert_eq!(send(accepted.clone()).await, 202, "{accepted:?}");
    }
    assert_eq!(prefix.ready(&events_queue).await, 3);
    for open in ["/healthz", "/readyz", "/metrics"] {
        let (status, _) = alertpost_tests::bin::http_get(addr, open).await.unwrap();
        assert_eq!(status, 200, "{open} stays open");
    }

    // A client that sends half its body holds the only slot: the next
    // request is turned away at once, and the slow one gets 408.
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(
        b"POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer first-token-0123456789\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"source\"",
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        send(Some("Bearer first-token-0123456789".to_owned())).await,
        503,
        "over max_concurrent"
    );
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut answer))
        .await
        .expect("the slow client is answered within the body bound")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    // The slot is free again.
    assert_eq!(
        send(Some("Bearer first-token-0123456789".to_owned())).await,
        202
    );

    // Headers that never end: the connection is closed.
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    silent
        .write_all(b"POST /v1/events HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), silent.read_to_end(&mut rest))
        .await
        .expect("closed within the header bound")
        .ok();

    // A connection left idle after its answer (keep-alive, no next request)
    // is closed by the same bound: idle connections do not pile up.
    let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answered = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), idle.read_to_end(&mut answered))
        .await
        .expect("an idle keep-alive connection is closed within the header bound")
        .ok();
    assert!(String::from_utf8_lossy(&answered).starts_with("HTTP/1.1 200"));

    // A stop does not hang behind a request in progress: one whose body
    // is still coming. The stop's bound ends it (before the body's own),
    // and its connection is closed without an answer.
    let mut holder = tokio::net::TcpStream::connect(addr).await.unwrap();
    holder
        .write_all(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer first-token-0123456789\r\ncontent-length: 100\r\n\r\n{")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ = stop.send(());
    let stopping = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("the ingest stops within its bound")
        .unwrap()
        .unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_millis(500), holder.read_to_end(&mut rest))
        .await
        .expect("the held connection is closed at the stop")
        .ok();
    assert!(
        rest.is_empty(),
        "closed, not answered: {}",
        String::from_utf8_lossy(&rest)
    );
    assert!(
        stopping.elapsed() < Duration::from_secs(2),
        "{:?}",
        stopping.elapsed()
    );
}

/// `GET /openapi.json`: the ingest's OpenAPI 3.1 document, which
/// `openapi-spec-validator` (PyPI) accepts, and whose answers the handlers
/// send: a 202's body and a 400's hold the fields the document names.
#[tokio::test]
async fn the_openapi_document_validates_and_matches_the_answers() {
    let prefix = TestPrefix::new("ingest-openapi");
    prefix.declare().await;
    let addr = alertpost_tests::start_ingest(&prefix.url, prefix.topology.clone()).await;
    let (status, text) = alertpost_tests::bin::http_get(addr, "/openapi.json")
        .await
        .expect("the ingest answers");
    assert_eq!(status, 200);
    let doc: Value = serde_json::from_str(&text).expect("JSON");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ingest.openapi.json");
    std::fs::write(&file, &text).unwrap();
    let validator = format!(
        "{}/../target/test-python/bin/openapi-spec-validator",
        env!("CARGO_MANIFEST_DIR")
    );
    assert!(
        std::path::Path::new(&validator).exists(),
        "{validator} is missing: run scripts/ensure-test-tools.sh (make test does)"
    );
    let out = std::process::Command::new(&validator)
        .arg(&file)
        .output()
        .expect("the validator runs");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // The answers carry what the document says they do.
    let required = |name: &str| -> Vec<String> {
        doc["components"]["schemas"][name]["required"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let client = reqwest::Client::new();
    let post = |body: &'static str| {
        client
            .post(format!("http://{addr}/v1/events"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let ok: Value = serde_json::from_slice(
        &post(r#"{"source":"t","status":"firing","title":"x"}"#)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    )
    .unwrap();
    for field in required("Accepted") {
        assert!(ok.get(&field).is_some(), "202 lacks {field}: {ok}");
    }
    let bad = post(r#"{"source":"t","status":"exploded"}"#).await.unwrap();
    assert_eq!(bad.status(), 400);
    let bad: Value = serde_json::from_slice(&bad.bytes().await.unwrap()).unwrap();
    for field in required("Problem") {
        assert!(bad.get(&field).is_some(), "400 lacks {field}: {bad}");
    }
}
