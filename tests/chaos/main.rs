//! The chaos suite (`make chaos`): the whole path under broker and receiver
//! faults. Each scenario is bounded in time, talks to loopback only, prints
//! `chaos <scenario>: delivered D, lost L, duplicates U, seconds S` and
//! fails on any loss. Duplicates are allowed (delivery is at least once)
//! and shown.
//!
//! These tests stop, alarm and cluster the broker: they run one at a time
//! (`--test-threads=1`) and never beside the other suites; each fault is a
//! guard that restores the broker on every path, a failed assertion
//! included.

mod alarm;
mod cluster;
mod flaky;
mod flood;
mod kill;
mod restart;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use alertpost_event::{Event, Status, delivery_id};
use alertpost_producer::Producer;
use alertpost_seam::Topology;
use alertpost_tests::Receiver;

/// A scenario's own bound, beyond which it fails.
pub const BOUND: Duration = Duration::from_secs(120);

/// One integration `hook` at `receiver`'s `/hook`, retrying quickly.
pub fn config(receiver: &Receiver, extra: &str) -> String {
    format!(
        "[policy]\nallow_networks = [\"127.0.0.0/8\"]\n[[integration]]\nid = \"hook\"\nurl = \"{}\"\ntimeout = \"3s\"\nconcurrency = 64\nretry = {{ initial = \"1s\", max_interval = \"2s\", jitter = 0.0, max_attempts = 50 }}\n{extra}",
        receiver.url("/hook")
    )
}

pub fn event(n: usize) -> Event {
    Event::new("chaos", Status::Firing, format!("chaos {n}"))
}

/// Publishes `n` events (confirmed) in batches; their delivery ids at `hook`.
pub async fn publish(producer: &Producer, n: usize) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    let mut left = n;
    let mut i = 0;
    while left > 0 {
        let batch: Vec<Event> = (0..left.min(500)).map(|k| event(i + k)).collect();
        let count = batch.len();
        let published = producer.publish_all(batch).await.expect("published");
        ids.extend(published.iter().map(|e| delivery_id(&e.id, "hook")));
        left -= count;
        i += count;
    }
    ids
}

/// What reached the receiver, against what was published.
pub struct Tally {
    pub delivered: usize,
    pub lost: usize,
    pub duplicates: usize,
}

pub fn tally(receiver: &Receiver, expected: &BTreeSet<String>) -> Tally {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for r in receiver.accepted() {
        if let Some(id) = r.header("webhook-id") {
            *seen.entry(id.to_owned()).or_default() += 1;
        }
    }
    let delivered = expected.iter().filter(|id| seen.contains_key(*id)).count();
    let duplicates = seen.values().map(|n| n - 1).sum();
    Tally {
        delivered,
        lost: expected.len() - delivered,
        duplicates,
    }
}

/// Waits until every expected delivery arrived (or `BOUND` passed), prints
/// the scenario's line and fails on any loss.
pub async fn settle(
    scenario: &str,
    receiver: &Receiver,
    expected: &BTreeSet<String>,
    began: Instant,
) -> Tally {
    let deadline = began + BOUND;
    loop {
        let t = tally(receiver, expected);
        if t.lost == 0 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A moment more, for duplicates still in flight to show.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t = tally(receiver, expected);
    println!(
        "chaos {scenario}: delivered {}, lost {}, duplicates {}, seconds {:.1}",
        t.delivered,
        t.lost,
        t.duplicates,
        began.elapsed().as_secs_f64()
    );
    assert_eq!(
        t.lost,
        0,
        "{scenario}: {} of {} lost",
        t.lost,
        expected.len()
    );
    t
}

/// The ingest for `topology` on 127.0.0.1:0, until the test ends.
pub async fn ingest(url: &str, topology: Topology) -> SocketAddr {
    alertpost_tests::start_ingest(url, topology).await
}

/// POSTs `body` to the ingest; the status, the answer, and how long it took.
pub async fn post(addr: SocketAddr, path: &str, body: String) -> (u16, String, Duration) {
    post_with(&reqwest::Client::new(), addr, path, body).await
}

/// [`post`] on `client` (for many requests: building a client, its TLS
/// roots, costs more than the request).
pub async fn post_with(
    client: &reqwest::Client,
    addr: SocketAddr,
    path: &str,
    body: String,
) -> (u16, String, Duration) {
    let began = Instant::now();
    let response = client
        .post(format!("http://{addr}{path}"))
        .header("content-type", "application/json")
        .timeout(Duration::from_secs(30))
        .body(body)
        .send()
        .await;
    match response {
        Ok(r) => {
            let status = r.status().as_u16();
            let text = r.text().await.unwrap_or_default();
            (status, text, began.elapsed())
        }
        Err(e) => (0, e.to_string(), began.elapsed()),
    }
}
