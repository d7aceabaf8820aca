//! `alertpost run` (the ingest and a worker on the embedded queue) against
//! the RabbitMQ path (`alertpost ingest` and `alertpost worker` on the local
//! broker), the whole user path: POST /v1/events → receiver.

use std::net::SocketAddr;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use alertpost_tests::TestPrefix;
use futures_util::StreamExt;

use serde_json::json;

use crate::report::{Section, Target, mib, mib_cell, worst};
use crate::{
    Sink, free_addr, median, percentile, rss_kib, stop, wait_count, worker_binary, worker_config,
};

/// Events per throughput run, posted as arrays of this many by this many
/// clients at once.
const BATCH: usize = 100;
const CLIENTS: usize = 8;

/// The processes of one path, stopped when dropped.
struct Path {
    children: Vec<Child>,
    ingest: SocketAddr,
    /// The process whose memory is reported (the embedded one, or the worker).
    main: u32,
    _dir: tempfile::TempDir,
    _prefix: Option<TestPrefix>,
}

impl Drop for Path {
    fn drop(&mut self) {
        for child in self.children.drain(..) {
            stop(child);
        }
    }
}

fn quiet() -> Stdio {
    Stdio::null()
}

fn start(url: &str, embedded: bool) -> Path {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = worker_config(dir.path(), url);
    let ingest = free_addr();
    let admin = free_addr();
    if embedded {
        let child = std::process::Command::new(worker_binary())
            .arg("run")
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args([
                "--listen",
                &ingest.to_string(),
                "--admin-addr",
                &admin.to_string(),
            ])
            .env("RUST_LOG", "warn")
            .stderr(quiet())
            .spawn()
            .expect("alertpost run starts");
        Path {
            main: child.id(),
            children: vec![child],
            ingest,
            _dir: dir,
            _prefix: None,
        }
    } else {
        let prefix = TestPrefix::new("bench-path");
        prefix.register_lanes(["bench"]);
        let worker = crate::spawn_worker_at(&prefix, &config, &dir.path().join("data"), admin);
        let ing = std::process::Command::new(worker_binary())
            .args(["ingest", "--listen", &ingest.to_string()])
            .env("ALERTPOST_AMQP_URL", &prefix.url)
            .env("ALERTPOST_PREFIX", &prefix.prefix)
            .env("RUST_LOG", "warn")
            .stderr(quiet())
            .spawn()
            .expect("alertpost ingest starts");
        Path {
            main: worker.id(),
            children: vec![worker, ing],
            ingest,
            _dir: dir,
            _prefix: Some(prefix),
        }
    }
}

async fn ready(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while alertpost_tests::bin::http_get(addr, "/readyz")
        .await
        .map(|(s, _)| s)
        != Some(200)
    {
        assert!(Instant::now() < deadline, "{addr} not ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One event, not in an array.
pub(crate) fn single(i: usize) -> String {
    let array = body(i, 1);
    array[1..array.len() - 1].to_owned()
}

pub(crate) fn body(from: usize, n: usize) -> String {
    let events: Vec<String> = (from..from + n)
        .map(|i| {
            format!(
                r#"{{"source":"bench","status":"firing","severity":"warning","title":"Disk usage high on db-{}","message":"Filesystem /var/lib/postgresql is 91% full (threshold 90%).","labels":{{"host":"db-{}","team":"storage"}}}}"#,
                i % 50,
                i % 50
            )
        })
        .collect();
    format!("[{}]", events.join(","))
}

pub(crate) async fn post(client: &reqwest::Client, ingest: SocketAddr, body: String) {
    for _ in 0..100 {
        let r = client
            .post(format!("http://{ingest}/v1/events"))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await;
        if r.is_ok_and(|r| r.status().as_u16() == 202) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the ingest did not accept a batch");
}

/// Events per second from the first receipt to the last.
async fn throughput(sink: &Arc<Sink>, url: &str, n: usize, embedded: bool) -> f64 {
    let path = start(url, embedded);
    ready(path.ingest).await;
    sink.reset(false);
    let client = reqwest::Client::new();
    let ingest = path.ingest;
    futures_util::stream::iter((0..n).step_by(BATCH))
        .for_each_concurrent(CLIENTS, |from| {
            let client = client.clone();
            async move { post(&client, ingest, body(from, BATCH.min(n - from))).await }
        })
        .await;
    assert!(
        wait_count(sink, n as u64, Duration::from_secs(120)).await,
        "not every event arrived"
    );
    let first = sink.first.lock().unwrap().expect("a first request");
    let last = sink.last.lock().unwrap().expect("a last request");
    drop(path);
    n as f64 / (last - first).as_secs_f64().max(1e-9)
}

/// p50, p99 (ms, ingest's `received_at` → receipt) at 200 events/s, one
/// event per request; and the RSS of the main process at the end (KiB).
async fn latency(
    sink: &Arc<Sink>,
    url: &str,
    secs: u64,
    embedded: bool,
) -> (f64, f64, Option<u64>) {
    let path = start(url, embedded);
    ready(path.ingest).await;
    sink.reset(true);
    let client = reqwest::Client::new();
    let total = (200 * secs) as usize;
    let mut interval = tokio::time::interval(Duration::from_millis(5));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..total {
        interval.tick().await;
        let (client, ingest) = (client.clone(), path.ingest);
        tasks.spawn(async move { post(&client, ingest, body(i, 1)).await });
    }
    while tasks.join_next().await.is_some() {}
    assert!(
        wait_count(sink, total as u64, Duration::from_secs(60)).await,
        "not every event arrived"
    );
    let rss = rss_kib(path.main);
    drop(path);
    let mut l = sink.latencies.lock().unwrap().clone();
    l.sort_by(|a, b| a.total_cmp(b));
    (percentile(&l, 0.5), percentile(&l, 0.99), rss)
}

/// The section of BENCHMARKS.md: `runs` interleaved rounds of each path.
pub async fn section(sink: &Arc<Sink>, url: &str, n: usize, runs: usize) -> Section {
    let (mut emb, mut rab) = (Vec::new(), Vec::new());
    for r in 1..=runs {
        let e = throughput(sink, url, n, true).await;
        let q = throughput(sink, url, n, false).await;
        eprintln!("embedded run {r}: alertpost run {e:.0}/s, ingest + worker on RabbitMQ {q:.0}/s");
        emb.push(e);
        rab.push(q);
    }
    let (mut p99s, mut p50s, mut rss) = (Vec::new(), Vec::new(), Vec::new());
    for r in 1..=runs {
        let (p50, p99, kib) = latency(sink, url, 10, true).await;
        eprintln!(
            "embedded latency run {r} at 200/s: p50 {p50:.2} p99 {p99:.2} ms, RSS {kib:?} KiB"
        );
        p50s.push(p50);
        p99s.push(p99);
        rss.extend(kib);
    }
    sink.measure_latency.store(false, Ordering::SeqCst);
    let list = |v: &[f64], digits: usize| {
        v.iter()
            .map(|x| format!("{x:.digits$}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (em, rm) = (median(emb.clone()), median(rab.clone()));
    let worst_rss_kib = rss.iter().copied().max();
    let worst_rss = mib_cell(worst_rss_kib);
    let markdown = format!(
        "## Embedded mode: `alertpost run` against the RabbitMQ path\n\n\
         The whole user path, POST /v1/events (arrays of {BATCH}, {CLIENTS} clients at once) → receiver, {n} events a run: \
         `alertpost run` (ingest and worker in one process, the queue on disk, `202` after its flush) against `alertpost ingest` \
         and `alertpost worker` on the local RabbitMQ, interleaved, {runs} runs each. Target: the embedded path at least as fast.\n\n\
         | path | runs (events/s) | median |\n| --- | --- | --- |\n\
         | `alertpost run` | {} | {em:.0} |\n| ingest + worker on RabbitMQ | {} | {rm:.0} |\n\n\
         **Ratio (embedded / RabbitMQ path): {:.2}.**\n\n\
         Latency at 200 events/s, one event per request (the ingest's `received_at` → receipt): p50 {} ms, p99 {} ms per run \
         (target p99 ≤ 4 ms). RSS of `alertpost run` at the end of those runs, the largest: **{worst_rss}** (target ≤ 64 MiB).\n\n",
        list(&emb, 0),
        list(&rab, 0),
        em / rm,
        list(&p50s, 2),
        list(&p99s, 2),
    );
    Section {
        markdown,
        figures: json!({
            "events": n,
            "batch": BATCH,
            "clients": CLIENTS,
            "embedded": { "runs": emb, "median": em },
            "rabbitmq_path": { "runs": rab, "median": rm },
            "ratio": em / rm,
            "latency_200_per_s": { "p50_ms": p50s, "p99_ms": p99s },
            "rss_kib": worst_rss_kib,
        }),
        targets: vec![
            Target::ratio_at_least("embedded / RabbitMQ path", em / rm, 1.0),
            Target::at_most("embedded p99 at 200/s, worst run", worst(&p99s), 4.0, "ms"),
            Target::at_most(
                "embedded RSS (`alertpost run`)",
                mib(worst_rss_kib),
                64.0,
                "MiB",
            ),
        ],
    }
}
