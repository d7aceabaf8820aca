//! A flood of malformed bodies at the ingest, with valid events among
//! them: every malformed one is refused with a 4xx, never published; every
//! valid one is delivered; the ingest stays ready.

use std::time::{Duration, Instant};

use alertpost_event::delivery_id;
use alertpost_tests::{Receiver, RunningWorker, TestPrefix};
use futures_util::StreamExt;

use crate::{config, ingest, post_with, settle};

/// Bodies a careless or hostile client sends.
fn malformed(i: usize) -> (&'static str, String) {
    match i % 8 {
        0 => ("/v1/events", "{not json".to_owned()),
        1 => ("/v1/events", "[]".to_owned()),
        2 => ("/v1/events", r#"{"source":"x"}"#.to_owned()),
        3 => ("/v1/events", format!("[{}]", "1,".repeat(1000) + "1")),
        4 => ("/v1/ingest/alertmanager", r#"{"alerts":"nope"}"#.to_owned()),
        5 => ("/v1/ingest/grafana", "\u{0}\u{1}\u{2}".to_owned()),
        6 => ("/v1/events", "\"".repeat(10_000)),
        _ => (
            "/v1/events",
            format!(r#"{{"source":"chaos","status":"burning","title":"t{i}"}}"#),
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_malformed_ingest_bodies_is_refused_and_valid_events_go_through() {
    let prefix = TestPrefix::new("chaos-flood");
    let receiver = Receiver::start().await;
    let mut worker = RunningWorker::start(&prefix, &config(&receiver, "")).await;
    let ingest = ingest(&prefix.url, prefix.topology.clone()).await;
    let began = Instant::now();
    let client = reqwest::Client::new();
    let client = &client;
    // 4000 malformed and 500 valid, 32 at a time.
    let requests = (0..4500).map(|i| {
        let (path, body) = if i % 9 == 0 {
            (
                "/v1/events",
                format!(r#"{{"source":"chaos","status":"firing","title":"valid {i}"}}"#),
            )
        } else {
            malformed(i)
        };
        async move { (i % 9 == 0, post_with(client, ingest, path, body).await) }
    });
    let answers: Vec<_> = futures_util::stream::iter(requests)
        .buffer_unordered(32)
        .collect()
        .await;
    let mut expected = std::collections::BTreeSet::new();
    let mut refused = 0;
    for (valid, (status, body, _)) in answers {
        if valid {
            assert_eq!(status, 202, "{body}");
            let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
            let id = v["ids"][0].as_str().expect("an id");
            expected.insert(delivery_id(id, "hook"));
        } else {
            assert!((400..500).contains(&status), "{status}: {body}");
            refused += 1;
        }
    }
    assert_eq!(refused, 4000);
    let ready = alertpost_tests::bin::http_get(ingest, "/readyz").await;
    assert!(matches!(ready, Some((200, _))), "{ready:?}");
    settle(
        "a flood of malformed ingest bodies",
        &receiver,
        &expected,
        began,
    )
    .await;
    // Nothing malformed was published: only the valid events arrived.
    receiver
        .assert_no_more(expected.len(), Duration::from_millis(500))
        .await;
    assert_eq!(prefix.ready(&prefix.topology.dead_queue()).await, 0);
    worker.stop().await.expect("the worker stops cleanly");
}
