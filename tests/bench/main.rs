//! `make bench`: alertpost against the minimal consume → POST → ack loop,
//! on the same broker and receiver, in the same run; writes BENCHMARKS.md.
//!
//! Throughput: N events are published into a fresh quorum queue, then the
//! consumer under test (the baseline loop, or `alertpost worker`, each its
//! own process) drains it into the receiver; the rate is N over the time
//! from the first request to the last. Runs alternate baseline/alertpost
//! and the medians are compared (the machines are noisy: ratios, not
//! absolutes). Latency: events published one at a time at a fixed rate, the
//! receiver measures receipt − `received_at`. Memory: the worker's peak RSS.
//!
//! `alertpost-bench baseline ...` is the baseline loop itself (run as a
//! child process by the bench).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use alertpost_event::{Event, Severity, Status};
use alertpost_producer::Producer;
use alertpost_tests::TestPrefix;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;

mod before;
mod embedded;
mod isolation;
mod path;
mod publish;
mod report;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("baseline") {
        baseline::run(&args[2..]).await;
        return;
    }
    if args.get(1).map(String::as_str) == Some("minimal-ingest") {
        path::minimal::run(&args[2..]).await;
        return;
    }
    let mut out = PathBuf::from("BENCHMARKS.md");
    let mut events = 20_000usize;
    let mut runs = 3usize;
    let mut throughput_only = false;
    let mut isolation_only = false;
    let mut isolation_events = 30_000usize;
    // Rounds of the isolation scenarios: the machines drift by more than
    // the 10 % the target is about, so more of them than of the rest.
    let mut isolation_runs = 5usize;
    let mut embedded_only = false;
    let mut publish_only = false;
    let mut path_only = false;
    let mut before_only = false;
    let mut i = 1;
    while i < args.len() {
        match args[i].as_str() {
            "--out" => out = PathBuf::from(&args[i + 1]),
            "--events" => events = args[i + 1].parse().expect("--events N"),
            "--runs" => runs = args[i + 1].parse().expect("--runs N"),
            // For profiling: one kind of run only, nothing written.
            "--throughput-only" => {
                throughput_only = true;
                i -= 1;
            }
            // Only the isolation scenarios, printed, nothing written.
            "--isolation-only" => {
                isolation_only = true;
                i -= 1;
            }
            "--isolation-events" => {
                isolation_events = args[i + 1].parse().expect("--isolation-events N")
            }
            "--isolation-runs" => isolation_runs = args[i + 1].parse().expect("--isolation-runs N"),
            // Only `alertpost run` against the RabbitMQ path, printed.
            "--embedded-only" => {
                embedded_only = true;
                i -= 1;
            }
            // Only the publish side, printed.
            "--publish-only" => {
                publish_only = true;
                i -= 1;
            }
            // Only the whole path (end to end, fan-out, the ingest), printed.
            "--path-only" => {
                path_only = true;
                i -= 1;
            }
            // Only the build before beside this one, printed.
            "--before-only" => {
                before_only = true;
                i -= 1;
            }
            other => panic!("unknown argument {other}"),
        }
        i += 2;
    }
    if before_only {
        let (sink, url) = sink().await;
        println!(
            "{}",
            before::section(&sink, &url, events, runs).await.markdown
        );
        return;
    }
    if path_only {
        let (sink, url) = sink().await;
        println!(
            "{}",
            path::section(&sink, &url, events, runs).await.markdown
        );
        return;
    }
    if publish_only {
        println!("{}", publish::section(events, runs).await.markdown);
        return;
    }
    if embedded_only {
        let (sink, url) = sink().await;
        println!(
            "{}",
            embedded::section(&sink, &url, events, runs).await.markdown
        );
        return;
    }
    if isolation_only {
        println!(
            "{}",
            isolation::section(isolation_events, isolation_runs)
                .await
                .markdown
        );
        return;
    }
    let Some((markdown, figures)) = bench(
        events,
        runs,
        throughput_only,
        (isolation_events, isolation_runs),
    )
    .await
    else {
        return;
    };
    std::fs::write(&out, markdown).expect("BENCHMARKS.md is writable");
    // The same figures as numbers, beside it: BENCHMARKS.json.
    let json_out = out.with_extension("json");
    let text = serde_json::to_string_pretty(&figures).expect("figures serialize");
    std::fs::write(&json_out, text + "\n").expect("BENCHMARKS.json is writable");
    eprintln!("wrote {} and {}", out.display(), json_out.display());
}

/// A receiver that counts requests and, when asked, the latency of each
/// (now − the body's `received_at`).
#[derive(Default)]
struct Sink {
    count: AtomicU64,
    first: Mutex<Option<Instant>>,
    last: Mutex<Option<Instant>>,
    latencies: Mutex<Vec<f64>>,
    measure_latency: std::sync::atomic::AtomicBool,
    /// The longest time between two requests.
    longest_gap: Mutex<Duration>,
}

impl Sink {
    /// Counts one request now.
    fn hit(&self) {
        let now = Instant::now();
        self.first.lock().unwrap().get_or_insert(now);
        let previous = self.last.lock().unwrap().replace(now);
        if let Some(previous) = previous {
            let mut gap = self.longest_gap.lock().unwrap();
            *gap = (*gap).max(now - previous);
        }
        self.count.fetch_add(1, Ordering::SeqCst);
    }

    fn reset(&self, latency: bool) {
        self.count.store(0, Ordering::SeqCst);
        *self.first.lock().unwrap() = None;
        *self.last.lock().unwrap() = None;
        *self.longest_gap.lock().unwrap() = Duration::ZERO;
        self.latencies.lock().unwrap().clear();
        self.measure_latency.store(latency, Ordering::SeqCst);
    }
}

/// The `p` quantile of sorted, non-empty `l`.
fn percentile(l: &[f64], p: f64) -> f64 {
    l[((l.len() as f64 * p).ceil() as usize)
        .saturating_sub(1)
        .min(l.len() - 1)]
}

/// The receiver every run posts to, and its URL.
async fn sink() -> (Arc<Sink>, String) {
    let sink = Arc::new(Sink::default());
    let app = Router::new().fallback(receive).with_state(sink.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (sink, url)
}

async fn receive(State(sink): State<Arc<Sink>>, body: Bytes) -> &'static str {
    if sink.measure_latency.load(Ordering::Relaxed)
        && let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body)
        && let Some(at) = v["received_at"].as_str()
        && let Ok(t) =
            time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
    {
        let ms = (time::OffsetDateTime::now_utc() - t).as_seconds_f64() * 1000.0;
        sink.latencies.lock().unwrap().push(ms);
    }
    sink.hit();
    "{\"status\":\"ok\"}"
}

async fn wait_count(sink: &Sink, n: u64, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while sink.count.load(Ordering::SeqCst) < n {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

fn sample_event(i: usize) -> Event {
    let mut e = Event::new(
        "bench",
        Status::Firing,
        format!("Disk usage high on db-{}", i % 50),
    );
    e.severity = Some(Severity::Warning);
    e.message = Some("Filesystem /var/lib/postgresql is 91% full (threshold 90%).".into());
    e.labels.insert("team".into(), "db".into());
    e.labels.insert("env".into(), "prod".into());
    e.labels.insert("host".into(), format!("db-{}", i % 50));
    // ALERTPOST_BENCH_KEYED=1: each event an alert of its own (`dedup_key`),
    // so that every delivery goes through per-key order's registry and
    // store, never superseded (the sink's counts stay whole).
    static KEYED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if *KEYED.get_or_init(|| std::env::var("ALERTPOST_BENCH_KEYED").is_ok_and(|v| v == "1")) {
        e.dedup_key = Some(format!("bench-{i}"));
    }
    e
}

fn exe_dir() -> PathBuf {
    std::env::current_exe()
        .expect("own path")
        .parent()
        .expect("a directory")
        .to_path_buf()
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// The RabbitMQ node's process (`beam.smp`) on this machine, if any: its
/// CPU is part of what a consumer costs.
fn broker_pid() -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.find_map(|e| {
        let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        (comm.trim() == "beam.smp").then_some(pid)
    })
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // Linux reports clock ticks of 1/100 s on every common configuration.
    Some((utime + stime) / 100.0)
}

/// One run: its rate, and the CPU per event (or POST) of the process under
/// test and of RabbitMQ over the run.
#[derive(Clone, Copy)]
struct Measured {
    rate: f64,
    own_us: Option<f64>,
    broker_us: Option<f64>,
}

/// RabbitMQ's CPU at the start of a run.
struct BrokerCpu(Option<(u32, f64)>);

impl BrokerCpu {
    fn start() -> BrokerCpu {
        BrokerCpu(broker_pid().and_then(|pid| Some((pid, cpu_seconds(pid)?))))
    }

    /// µs per unit since the start.
    fn per(&self, units: usize) -> Option<f64> {
        let (pid, at) = self.0?;
        Some((cpu_seconds(pid)? - at) * 1e6 / units as f64)
    }
}

/// The runs' rates, for a table cell.
fn list(v: &[Measured]) -> String {
    v.iter()
        .map(|x| format!("{:.0}", x.rate))
        .collect::<Vec<_>>()
        .join(", ")
}

fn rates(v: &[Measured]) -> Vec<f64> {
    v.iter().map(|m| m.rate).collect()
}

/// Median CPU µs per unit over the runs, the process + RabbitMQ, with
/// `decimals` places.
fn cpu(v: &[Measured], decimals: usize) -> String {
    let of = |f: fn(&Measured) -> Option<f64>| {
        let got: Vec<f64> = v.iter().filter_map(f).collect();
        if got.is_empty() {
            "?".to_owned()
        } else {
            format!("{:.decimals$}", median(got))
        }
    };
    format!("{} + {}", of(|m| m.own_us), of(|m| m.broker_us))
}

/// CPU seconds (user + system) of this process's children that have been
/// waited for: what a command run to its exit cost.
fn children_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let cutime: f64 = fields.get(13)?.parse().ok()?;
    let cstime: f64 = fields.get(14)?.parse().ok()?;
    Some((cutime + cstime) / 100.0)
}

fn stop(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

struct Run {
    rate: f64,
    peak_rss_kib: Option<u64>,
    /// CPU microseconds the consumer process spent per event.
    cpu_us: Option<f64>,
}

async fn preload(prefix: &TestPrefix, n: usize) {
    let producer = Producer::connect(&prefix.url, &prefix.prefix, "bench-loader")
        .await
        .expect("RabbitMQ is reachable");
    for chunk in (0..n).collect::<Vec<_>>().chunks(2000) {
        producer
            .publish_all(chunk.iter().map(|i| sample_event(*i)).collect())
            .await
            .expect("preload");
    }
    producer.close().await;
}

/// The in-flight window of both consumers (the baseline's prefetch and
/// permits, the worker's `max_inflight`): `ALERTPOST_BENCH_INFLIGHT`, 256 by
/// default.
fn inflight() -> String {
    std::env::var("ALERTPOST_BENCH_INFLIGHT").unwrap_or_else(|_| "256".into())
}

fn worker_config(dir: &std::path::Path, url: &str) -> PathBuf {
    let path = dir.join("bench.toml");
    // The same window as the baseline loop's prefetch unless an experiment
    // says otherwise.
    let inflight = inflight();
    std::fs::write(
        &path,
        format!(
            "[policy]\nallow_networks = [\"127.0.0.0/8\"]\n[worker]\nmax_inflight = {inflight}\n\
             [[integration]]\nid = \"bench\"\nurl = \"{url}\"\nconcurrency = {inflight}\n"
        ),
    )
    .expect("temp dir is writable");
    path
}

/// `program`, or, when the environment variable `var` holds a command
/// (e.g. `perf record -g -o /tmp/perf.data --`), `program` run under it:
/// `ALERTPOST_BENCH_WRAP` for the worker, `ALERTPOST_BENCH_WRAP_BASELINE`
/// for the baseline loop.
fn wrapped(var: &str, program: PathBuf) -> Command {
    let wrap = std::env::var(var).unwrap_or_default();
    let mut words = wrap.split_whitespace();
    match words.next() {
        Some(wrapper) => {
            let mut c = Command::new(wrapper);
            c.args(words).arg(program);
            c
        }
        None => Command::new(program),
    }
}

/// The worker binary a run uses for now (the before-and-after section
/// switches between two builds); `None`: [`worker_binary`]'s default.
static WORKER_BINARY: Mutex<Option<PathBuf>> = Mutex::new(None);

/// The worker binary: the one the section running now chose, else
/// `ALERTPOST_BENCH_BIN` (another build), else the one built beside the
/// bench.
fn worker_binary() -> PathBuf {
    if let Some(chosen) = WORKER_BINARY.lock().unwrap().clone() {
        return chosen;
    }
    std::env::var_os("ALERTPOST_BENCH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| exe_dir().join("alertpost"))
}

/// Runs `f` with `bin` as the worker binary (the bench runs one thing at a
/// time, so one choice at a time).
async fn with_worker_binary<T>(bin: Option<PathBuf>, f: impl Future<Output = T>) -> T {
    let before = std::mem::replace(&mut *WORKER_BINARY.lock().unwrap(), bin);
    let out = f.await;
    *WORKER_BINARY.lock().unwrap() = before;
    out
}

fn spawn_worker(prefix: &TestPrefix, config: &std::path::Path, data: &std::path::Path) -> Child {
    spawn_worker_at(
        prefix,
        config,
        data,
        "127.0.0.1:0".parse().expect("an address"),
    )
}

/// A free port on loopback, for a worker's admin server the bench reads.
fn free_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

fn spawn_worker_at(
    prefix: &TestPrefix,
    config: &std::path::Path,
    data: &std::path::Path,
    admin: std::net::SocketAddr,
) -> Child {
    let mut cmd = wrapped("ALERTPOST_BENCH_WRAP", worker_binary());
    cmd.args(["worker", "--config"])
        .arg(config)
        .args(["--admin-addr", &admin.to_string(), "--data-dir"])
        .arg(data)
        .env("ALERTPOST_AMQP_URL", &prefix.url)
        .env("ALERTPOST_PREFIX", &prefix.prefix)
        .env(
            "RUST_LOG",
            std::env::var("ALERTPOST_BENCH_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stderr(match std::env::var_os("ALERTPOST_BENCH_LOG_FILE") {
            // For experiments: the worker's log, appended to this file.
            Some(path) => std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_or_else(|_| Stdio::null(), Stdio::from),
            None => Stdio::null(),
        })
        .spawn()
        .expect("target/release/alertpost exists (make bench builds it)")
}

async fn throughput(sink: &Sink, url: &str, n: usize, alertpost: bool) -> Run {
    let prefix = TestPrefix::new(if alertpost { "bench-ap" } else { "bench-base" });
    prefix.register_lanes(["bench"]);
    prefix.declare().await;
    preload(&prefix, n).await;
    sink.reset(false);
    let dir = tempfile::tempdir().expect("temp dir");
    let child = if alertpost {
        let config = worker_config(dir.path(), url);
        spawn_worker(&prefix, &config, &dir.path().join("data"))
    } else {
        spawn_baseline(&prefix, url)
    };
    let pid = child.id();
    let done = wait_count(sink, n as u64, Duration::from_secs(300)).await;
    let rss = peak_rss_kib(pid);
    let cpu = cpu_seconds(pid);
    stop(child);
    assert!(
        done,
        "only {} of {n} requests arrived",
        sink.count.load(Ordering::SeqCst)
    );
    let first = sink.first.lock().unwrap().expect("requests arrived");
    let last = sink.last.lock().unwrap().expect("requests arrived");
    let secs = (last - first).as_secs_f64().max(1e-6);
    Run {
        rate: (n as f64 - 1.0) / secs,
        peak_rss_kib: rss,
        cpu_us: cpu.map(|c| c * 1e6 / n as f64),
    }
}

/// Publishes `rate` events/s for `secs` seconds (one publish per tick,
/// confirmed) into a running worker; returns (p50, p99, max) in ms.
/// One latency run: percentiles in ms, the count, and the consumer's
/// resident memory at the end (KiB).
struct Latency {
    p50: f64,
    p99: f64,
    max: f64,
    count: usize,
    rss_kib: Option<u64>,
}

/// One rate's latency over several runs: medians of p50 and p99, the
/// largest max, the events of all runs, and the largest end-of-run RSS.
struct LatencyRuns {
    p50: f64,
    p99: f64,
    p99s: Vec<f64>,
    max: f64,
    count: usize,
    rss_kib: Option<u64>,
}

impl LatencyRuns {
    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "p50_ms": self.p50,
            "p99_ms": self.p99,
            "p99_ms_per_run": self.p99s,
            "max_ms": self.max,
            "events": self.count,
            "rss_kib": self.rss_kib,
        })
    }

    fn of(runs: Vec<Latency>) -> LatencyRuns {
        LatencyRuns {
            p50: median(runs.iter().map(|r| r.p50).collect()),
            p99: median(runs.iter().map(|r| r.p99).collect()),
            p99s: runs.iter().map(|r| r.p99).collect(),
            max: runs.iter().map(|r| r.max).fold(0.0, f64::max),
            count: runs.iter().map(|r| r.count).sum(),
            rss_kib: runs.iter().filter_map(|r| r.rss_kib).max(),
        }
    }
}

fn spawn_baseline(prefix: &TestPrefix, url: &str) -> Child {
    spawn_baseline_with(prefix, url, 1)
}

/// The baseline loop making `posts` POSTs per message (more than one: to
/// `<url>/fan<i>`, as the fan-out integrations do).
fn spawn_baseline_with(prefix: &TestPrefix, url: &str, posts: usize) -> Child {
    wrapped(
        "ALERTPOST_BENCH_WRAP_BASELINE",
        std::env::current_exe().expect("own path"),
    )
    .args([
        "baseline",
        &prefix.url,
        &prefix.topology.events_queue(),
        url,
        &inflight(),
        &posts.to_string(),
    ])
    .stderr(Stdio::inherit())
    .spawn()
    .expect("the baseline loop starts")
}

/// Publishes at `rate` for `secs` into a running consumer (alertpost's
/// worker, or the baseline loop) and measures publish → receipt.
async fn latency(sink: &Sink, url: &str, rate: u64, secs: u64, alertpost: bool) -> Latency {
    let prefix = TestPrefix::new("bench-lat");
    prefix.register_lanes(["bench"]);
    let dir = tempfile::tempdir().expect("temp dir");
    let producer = Producer::connect(&prefix.url, &prefix.prefix, "bench-latency")
        .await
        .expect("RabbitMQ is reachable");
    let child = if alertpost {
        let config = worker_config(dir.path(), url);
        spawn_worker(&prefix, &config, &dir.path().join("data"))
    } else {
        spawn_baseline(&prefix, url)
    };
    // Let the worker connect and start consuming before measuring.
    tokio::time::sleep(Duration::from_secs(2)).await;
    sink.reset(true);
    let total = (rate * secs) as usize;
    // Ticks of 10 ms, each publishing its share; every publish is confirmed
    // before the next tick's (`received_at` is stamped just before sending).
    let per_tick = (rate as f64 / 100.0).max(1.0);
    let mut interval = tokio::time::interval(Duration::from_millis(10));
    let mut sent = 0usize;
    let mut owed = 0.0f64;
    let mut tasks = tokio::task::JoinSet::new();
    while sent < total {
        interval.tick().await;
        owed += per_tick;
        let k = (owed.floor() as usize).min(total - sent);
        owed -= k as f64;
        if k > 0 {
            let p = producer.clone();
            let batch: Vec<Event> = (sent..sent + k).map(sample_event).collect();
            tasks.spawn(async move { p.publish_all(batch).await.map(|_| ()) });
            sent += k;
        }
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("publisher task").expect("publish");
    }
    let arrived = wait_count(sink, total as u64, Duration::from_secs(60)).await;
    producer.close().await;
    let rss_kib = rss_kib(child.id());
    stop(child);
    assert!(arrived, "latency run: not every event arrived");
    let mut l = sink.latencies.lock().unwrap().clone();
    l.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| percentile(&l, p);
    Latency {
        p50: pct(0.50),
        p99: pct(0.99),
        max: l[l.len() - 1],
        count: l.len(),
        rss_kib,
    }
}

/// Resident memory now (KiB).
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The profiles behind the targets not met, kept by hand (callgrind
/// counts do not change from run to run, so they are not re-measured
/// here): appended to what the bench measured.
const PROFILE: &str = include_str!("profile.md");

async fn bench(
    n: usize,
    runs: usize,
    throughput_only: bool,
    (isolation_events, isolation_runs): (usize, usize),
) -> Option<(String, serde_json::Value)> {
    let (sink, url) = sink().await;

    let mut base = Vec::new();
    let mut ours = Vec::new();
    let mut rss = Vec::new();
    let mut base_cpu: Vec<f64> = Vec::new();
    let mut ours_cpu: Vec<f64> = Vec::new();
    for r in 1..=runs {
        let b = throughput(&sink, &url, n, false).await;
        eprintln!(
            "run {r}: baseline {:.0}/s, {:.1} µs CPU/event",
            b.rate,
            b.cpu_us.unwrap_or(0.0)
        );
        let a = throughput(&sink, &url, n, true).await;
        eprintln!(
            "run {r}: alertpost {:.0}/s, {:.1} µs CPU/event (peak RSS {:?} KiB)",
            a.rate,
            a.cpu_us.unwrap_or(0.0),
            a.peak_rss_kib
        );
        base_cpu.extend(b.cpu_us);
        ours_cpu.extend(a.cpu_us);
        base.push(b.rate);
        ours.push(a.rate);
        rss.extend(a.peak_rss_kib);
    }
    let base_med = median(base.clone());
    let ours_med = median(ours.clone());
    let ratio = ours_med / base_med;
    let ratios: Vec<String> = base
        .iter()
        .zip(&ours)
        .map(|(b, a)| format!("{:.2}", a / b))
        .collect();

    if throughput_only {
        return None;
    }
    // Latency, alertpost and the baseline at the same rates: a steady 200/s,
    // and half the baseline's ceiling.
    let half = ((base_med / 2.0) as u64).max(200);
    // Each rate is measured `runs` times, alternating, and reported by the
    // median run: one scheduling hiccup on a shared core is not the answer.
    let mut lat = Vec::new();
    for (rate, secs) in [(200u64, 10u64), (half, 5)] {
        let mut ours = Vec::new();
        let mut base = Vec::new();
        for r in 1..=runs {
            let b = latency(&sink, &url, rate, secs, false).await;
            let a = latency(&sink, &url, rate, secs, true).await;
            eprintln!(
                "latency run {r} at {rate}/s: alertpost p50 {:.2} p99 {:.2} ms; baseline p50 {:.2} p99 {:.2} ms",
                a.p50, a.p99, b.p50, b.p99
            );
            ours.push(a);
            base.push(b);
        }
        lat.push((rate, LatencyRuns::of(ours), LatencyRuns::of(base)));
    }
    let steady_rss_kib = lat[0].1.rss_kib;
    let steady_rss = report::mib_cell(steady_rss_kib);
    let peak_rss = report::mib_cell(rss.iter().copied().max());

    let date = time::OffsetDateTime::now_utc().date();
    let rabbit = Command::new("rabbitmqctl")
        .arg("version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let fmt_ms = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let fmt_runs = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let window = inflight();
    let publish = publish::section(n, runs).await;
    let isolation = isolation::section(isolation_events, isolation_runs).await;
    let embedded = embedded::section(&sink, &url, n, runs).await;
    let path = path::section(&sink, &url, n, runs).await;
    let before = before::section(&sink, &url, n, runs).await;
    let half_ceiling = half_ceiling_target(lat[1].0, &lat[1].1, &lat[1].2);
    let mut targets = vec![
        report::Target::ratio_at_least("worker throughput / minimal loop", ratio, 0.85),
        // In every run, not only the median.
        report::Target::at_most(
            "p99 publish → receipt at 200/s, worst run",
            report::worst(&lat[0].1.p99s),
            4.0,
            "ms",
        ),
        half_ceiling.clone(),
        report::Target::at_most(
            "worker RSS at steady load",
            report::mib(steady_rss_kib),
            40.0,
            "MiB",
        ),
    ];
    for section in [&before, &path, &publish, &isolation, &embedded] {
        targets.extend(section.targets.iter().cloned());
    }
    let targets_table = report::targets_table(&targets);
    let latency_json: Vec<serde_json::Value> = lat
        .iter()
        .map(|(rate, a, b)| {
            serde_json::json!({
                "rate_per_s": rate,
                "alertpost": a.json(),
                "baseline": b.json(),
            })
        })
        .collect();
    let figures = serde_json::json!({
        "date": date.to_string(),
        "cores": cores,
        "rabbitmq": rabbit,
        "events": n,
        "runs": runs,
        "inflight": window,
        "targets": targets.iter().map(report::Target::json).collect::<Vec<_>>(),
        "throughput": {
            "baseline": { "runs": base, "cpu_us": base_cpu, "median": base_med, "cpu_us_median": median(base_cpu.clone()) },
            "alertpost": { "runs": ours, "cpu_us": ours_cpu, "peak_rss_kib": rss, "median": ours_med, "cpu_us_median": median(ours_cpu.clone()) },
            "ratio": ratio,
        },
        "latency": latency_json,
        "memory": {
            "steady_rss_kib": steady_rss_kib,
            "peak_rss_kib": rss.iter().copied().max(),
        },
        "path": path.figures,
        "publish": publish.figures,
        "isolation": isolation.figures,
        "embedded": embedded.figures,
        "before": before.figures,
    });
    let (path, publish, isolation, embedded, before) = (
        path.markdown,
        publish.markdown,
        isolation.markdown,
        embedded.markdown,
        before.markdown,
    );
    let mut latency_rows = String::new();
    for (rate, a, b) in &lat {
        let target = if *rate == 200 {
            "p99 ≤ 4 ms in every run".to_owned()
        } else {
            format!("p99 {}", half_ceiling.goal)
        };
        latency_rows.push_str(&format!(
            "| {rate}/s | alertpost | {} | {:.2} ms | {:.2} ms | {} | {:.2} ms | {target} |\n\
             | {rate}/s | baseline loop | {} | {:.2} ms | {:.2} ms | {} | {:.2} ms | |\n",
            a.count,
            a.p50,
            a.p99,
            fmt_ms(&a.p99s),
            a.max,
            b.count,
            b.p50,
            b.p99,
            fmt_ms(&b.p99s),
            b.max
        ));
    }
    let markdown = format!(
        "# Benchmarks\n\n\
         Written by `make bench` on {date}: {cores} cores, RabbitMQ {rabbit}, quorum queues, release \
         build, broker and receiver on loopback, every attempt recorded in the worker's store. One \
         machine, one run of the bench, shared cores: compare ratios, not absolutes. The same figures \
         as numbers: BENCHMARKS.json.\n\n\
         {targets_table}\
         ## Throughput: alertpost vs the minimal consume → POST → ack loop\n\n\
         {n} events preloaded into a fresh quorum queue, then drained by the consumer under test (its \
         own process) into one HTTP receiver: the baseline loop (consume, POST the body as is, ack) or \
         `alertpost worker` (decode, match, render, deliver, classify, record, ack). Both hold {window} \
         messages in flight at most (prefetch and permits) over one pooled HTTP client. The rate is the \
         events over the time from the first request to the last. Baseline and alertpost alternate, \
         {runs} runs each.\n\n\
         | | runs (events/s) | median (events/s) |\n| --- | --- | --- |\n\
         | baseline loop | {} | {base_med:.0} |\n| alertpost worker | {} | {ours_med:.0} |\n\n\
         **Ratio (median alertpost / median baseline): {ratio:.2}** (per run: {}). Target: ≥ 0.85.\n\n\
         CPU time of the consumer process per event (median): baseline {:.1} µs, alertpost {:.1} µs. \
         The two cores are shared with RabbitMQ and the receiver, so every microsecond the consumer \
         spends is one RabbitMQ does not get: the CPU per event is what sets the ratio.\n\n\
         ## Latency: publish → receipt\n\n\
         A running consumer; events published at a fixed rate, each confirmed by RabbitMQ; the receiver \
         measures its clock minus the event's `received_at` (stamped by the producer just before \
         publishing), so the figures include the publish and its confirm. The baseline loop runs the \
         same way for comparison. Each rate runs {runs} times per consumer, alternating; p50 and p99 are \
         the medians over the runs (per-run p99s listed), events and max cover all runs.\n\n\
         | rate | consumer | events | p50 | p99 | p99 per run (ms) | max | target |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- |\n\
         {latency_rows}\n\
         ## Memory\n\n\
         Worker RSS at the end of the 200/s runs (steady load; the largest of the runs): **{steady_rss}** (target ≤ 40 MiB). Peak \
         RSS during the throughput runs ({window} requests in flight): {peak_rss}.\n\n\
         {path}\
         {publish}\
         {isolation}\
         {embedded}\
         {before}\
         {PROFILE}",
        fmt_runs(&base),
        fmt_runs(&ours),
        ratios.join(", "),
        median(base_cpu),
        median(ours_cpu),
    );
    Some((markdown, figures))
}

/// Latency at half the ceiling: under 25 ms, or, where the machine cannot
/// (the minimal loop itself is not), within 1.5 × the loop's own p99.
fn half_ceiling_target(rate: u64, ours: &LatencyRuns, base: &LatencyRuns) -> report::Target {
    let name = format!("p99 publish → receipt at half the ceiling ({rate}/s)");
    let mut t = report::Target::at_most(name, ours.p99, 25.0, "ms");
    if base.p99 < 25.0 {
        t.goal = "< 25 ms".to_owned();
        t.met = ours.p99 < 25.0;
    } else {
        let bound = 1.5 * base.p99;
        t.goal = format!(
            "< 25 ms, or (the loop's own p99 is not) ≤ 1.5 × the loop's p99, {bound:.2} ms"
        );
        t.met = ours.p99 < 25.0 || ours.p99 <= bound;
    }
    t
}

mod baseline {
    //! The minimal loop: consume with manual acks under a prefetch window,
    //! POST the body as is, ack on a 2xx. Nothing else: no decoding, no
    //! matching, no recording, no retries.

    use std::sync::Arc;

    use futures_util::StreamExt;
    use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
    use lapin::types::FieldTable;
    use lapin::{Connection, ConnectionProperties};
    use tokio::sync::Semaphore;

    pub async fn run(args: &[String]) {
        let [url, queue, target, prefetch, posts] = args else {
            panic!("baseline AMQP_URL QUEUE TARGET_URL PREFETCH POSTS_PER_MESSAGE");
        };
        let prefetch: u16 = prefetch.parse().expect("prefetch");
        let posts: usize = posts.parse().expect("posts per message");
        let targets: Arc<Vec<String>> = Arc::new(if posts == 1 {
            vec![target.clone()]
        } else {
            (0..posts).map(|i| format!("{target}/fan{i}")).collect()
        });
        let conn = Connection::connect(url, ConnectionProperties::default())
            .await
            .expect("connect");
        let channel = conn.create_channel().await.expect("channel");
        channel
            .basic_qos(prefetch, BasicQosOptions::default())
            .await
            .expect("qos");
        let mut consumer = channel
            .basic_consume(
                queue.as_str().into(),
                "baseline".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("consume");
        let http = reqwest::Client::new();
        let bound = Arc::new(Semaphore::new(usize::from(prefetch)));
        while let Some(delivery) = consumer.next().await {
            let Ok(delivery) = delivery else { break };
            let permit = bound.clone().acquire_owned().await.expect("open");
            let http = http.clone();
            let targets = targets.clone();
            tokio::spawn(async move {
                let body = bytes::Bytes::from(delivery.data);
                let sent = futures_util::future::join_all(targets.iter().map(|target| {
                    http.post(target)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                }))
                .await;
                let ok = sent
                    .into_iter()
                    .all(|r| r.is_ok_and(|r| r.status().is_success()));
                if ok {
                    let _ = delivery.acker.ack(BasicAckOptions::default()).await;
                } else {
                    let _ = delivery
                        .acker
                        .nack(BasicNackOptions {
                            requeue: true,
                            ..BasicNackOptions::default()
                        })
                        .await;
                }
                drop(permit);
            });
        }
    }
}
