//! Both OpenAPI documents against the servers they describe: schemathesis
//! (PyPI) generates requests from each document, valid and not, sends them
//! to a running ingest and a running worker, and checks that no answer is
//! a 5xx and that every answer's status, content type and body are the
//! ones the document gives.

use std::process::Command;
use std::time::Duration;

use alertpost_event::{Event, Status};
use alertpost_tests::{Backend, Receiver, Reply, RunningWorker, TestPrefix, eventually};
use rstest::rstest;

/// Requests per operation: enough for each phase to reach every
/// parameter, few enough to keep the run to seconds.
const EXAMPLES: &str = "25";
const TOKEN: &str = "schemathesis-admin-token-0123";

/// Runs schemathesis against the document at `base`/openapi.json; panics
/// with its report unless every check passed.
async fn schemathesis(base: String, extra: &[&str]) {
    let tool = format!(
        "{}/../target/test-python/bin/schemathesis",
        env!("CARGO_MANIFEST_DIR")
    );
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(&tool);
    command
        .arg("run")
        .arg(format!("{base}/openapi.json"))
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
            "--max-examples",
            EXAMPLES,
            "--seed",
            "20261201",
            "--generation-database",
            "none",
            "--request-timeout",
            "15",
            "--workers",
            "1",
            "--no-color",
        ])
        .args(extra)
        // It writes nothing we keep; keep it out of the tree.
        .current_dir(dir.path());
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = tx.send(command.output());
    });
    let out = tokio::time::timeout(Duration::from_secs(240), rx)
        .await
        .expect("schemathesis finishes within 4 minutes")
        .unwrap()
        .unwrap_or_else(|e| panic!("{tool} runs (scripts/ensure-test-tools.sh installs it): {e}"));
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{report}");
    // `N generated, N passed`: it ran cases, and every one held.
    assert!(
        report.contains(" generated, ") && report.contains(" passed"),
        "it ran cases: {report}"
    );
}

/// The ingest's document: every operation, valid and invalid events and
/// payloads, no token configured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_the_ingest_true_to_its_document() {
    let prefix = TestPrefix::new("schemathesis-ingest");
    prefix.declare().await;
    let addr = alertpost_tests::start_ingest(&prefix.url, prefix.topology.clone()).await;
    schemathesis(format!("http://{addr}"), &[]).await;
}

/// The admin API's document, token given, over both backends, with a
/// delivery and a dead letter to read: attempts, integrations and test
/// deliveries, the dead queue (replay and purge included: the test's own).
#[rstest]
#[case::rabbitmq(Backend::RabbitMq)]
#[case::embedded(Backend::Embedded)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_the_admin_api_true_to_its_document(#[case] backend: Backend) {
    let prefix = TestPrefix::new("schemathesis-admin");
    let receiver = Receiver::start().await;
    let toml = format!(
        "[admin]\ntoken = \"{TOKEN}\"\n[policy]\nallow_networks = [\"127.0.0.0/8\"]\n\
         [[integration]]\nid = \"hook\"\nurl = \"{}\"\n",
        receiver.url("/hook")
    );
    // Something to read: a delivered event's attempts, and a dead letter
    // (a 410), so the answers' bodies are checked against their schemas.
    receiver.script("/hook", [Reply::status(410).body("gone")]);
    let mut worker = RunningWorker::start_on(backend, &prefix, &toml).await;
    for title in ["dead", "delivered"] {
        worker
            .publish(Event::new("schemathesis", Status::Firing, title))
            .await;
    }
    eventually(
        Duration::from_secs(20),
        "a dead letter and a delivery",
        || async {
            let dead = worker.dead_count(&prefix).await;
            let done = receiver.accepted().len();
            if dead == 1 && done == 1 {
                Ok(())
            } else {
                Err(format!("{dead} dead, {done} delivered"))
            }
        },
    )
    .await;
    let header = format!("Authorization: Bearer {TOKEN}");
    schemathesis(format!("http://{}", worker.admin), &["--header", &header]).await;
    worker.stop().await.unwrap();
}
