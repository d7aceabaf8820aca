//! The whole path as a user runs it (issue 16, targets 1, 2 and 4), each
//! against its minimal loop in the same run:
//! - end to end: `alertpost publish` of an NDJSON file while a running
//!   `alertpost worker` delivers it, against the bare lapin publish loop
//!   while the baseline consume → POST → ack loop delivers it;
//! - fan-out: every event matching 4 integrations, against the baseline
//!   loop making 4 POSTs per message;
//! - the ingest: `POST /v1/events` (single events, and arrays of 100, many
//!   clients at once) into `alertpost ingest`, against a minimal axum +
//!   lapin server that publishes each body (each element of an array) with
//!   a confirm and answers 202, without validation.

use std::net::SocketAddr;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use alertpost_tests::TestPrefix;
use futures_util::StreamExt;

use crate::{
    BrokerCpu, Measured, Sink, free_addr, list, median, rates, spawn_baseline_with,
    spawn_worker_at, stop, wait_count, worker_binary,
};
use serde_json::json;

use crate::report::{Section, Target, runs};

/// Integrations every event matches in the fan-out runs (and POSTs per
/// message of its baseline).
pub const FANOUT: usize = 4;
/// Clients at once posting single events, and posting arrays.
const SINGLE_CLIENTS: usize = 32;
const ARRAY_CLIENTS: usize = 8;
const ARRAY: usize = 100;

/// Median over the rounds of each round's ratio.
fn ratio(ours: &[Measured], base: &[Measured]) -> f64 {
    median(
        ours.iter()
            .zip(base)
            .map(|(a, b)| a.rate / b.rate)
            .collect(),
    )
}

/// One event through the consumer under test, so it is consuming before
/// the clock starts (a condition, not a pause).
async fn warm_up(prefix: &TestPrefix, sink: &Sink) {
    let producer = alertpost_producer::Producer::connect(&prefix.url, &prefix.prefix, "bench-warm")
        .await
        .expect("RabbitMQ is reachable");
    producer
        .publish(crate::sample_event(0))
        .await
        .expect("published");
    producer.close().await;
    assert!(
        wait_count(sink, 1, Duration::from_secs(30)).await,
        "the consumer did not start"
    );
}

/// End to end, one run: publish `bodies` (or `file`, with `alertpost
/// publish`) while the consumer delivers; events/s from the start of the
/// publish to the last receipt.
pub(crate) async fn end_to_end(
    sink: &Arc<Sink>,
    url: &str,
    file: &std::path::Path,
    bodies: &[(String, Vec<u8>)],
    alertpost: bool,
) -> Measured {
    let n = bodies.len();
    let prefix = TestPrefix::new(if alertpost {
        "bench-e2e-ap"
    } else {
        "bench-e2e-base"
    });
    prefix.register_lanes(["bench"]);
    prefix.declare().await;
    let dir = tempfile::tempdir().expect("temp dir");
    sink.reset(false);
    let child = if alertpost {
        let config = crate::worker_config(dir.path(), url);
        spawn_worker_at(&prefix, &config, &dir.path().join("data"), free_addr())
    } else {
        spawn_baseline_with(&prefix, url, 1)
    };
    warm_up(&prefix, sink).await;
    sink.reset(false);
    let broker = BrokerCpu::start();
    let own = crate::cpu_seconds(child.id());
    let started = Instant::now();
    if alertpost {
        let mut cmd = std::process::Command::new(worker_binary());
        cmd.args(["--prefix", &prefix.prefix, "--amqp", &prefix.url, "publish"])
            .arg(file);
        let out = tokio::task::spawn_blocking(move || cmd.output())
            .await
            .expect("the blocking pool runs it")
            .expect("alertpost publish runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        crate::publish::bare_into(&prefix, bodies).await;
    }
    let arrived = wait_count(sink, n as u64, Duration::from_secs(300)).await;
    let last = *sink.last.lock().unwrap();
    // The consumer's CPU only: the bare loop publishes from this process,
    // which also hosts the receiver (the publish section has the
    // publishers' CPU).
    let own_us = (|| Some((crate::cpu_seconds(child.id())? - own?) * 1e6 / n as f64))();
    let broker_us = broker.per(n);
    stop(child);
    assert!(arrived, "end to end: not every event arrived");
    let took = last.expect("requests arrived") - started;
    Measured {
        rate: n as f64 / took.as_secs_f64().max(1e-9),
        own_us,
        broker_us,
    }
}

/// Fan-out, one run: `n` events preloaded, each matching [`FANOUT`]
/// integrations (the baseline: that many POSTs per message); POSTs/s from
/// the first request to the last.
pub(crate) async fn fan_out(sink: &Arc<Sink>, url: &str, n: usize, alertpost: bool) -> Measured {
    let prefix = TestPrefix::new(if alertpost {
        "bench-fan-ap"
    } else {
        "bench-fan-base"
    });
    let ids: Vec<String> = (0..FANOUT).map(|i| format!("fan{i}")).collect();
    prefix.register_lanes(ids.iter().map(String::as_str));
    prefix.declare().await;
    crate::preload(&prefix, n).await;
    sink.reset(false);
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = BrokerCpu::start();
    let child = if alertpost {
        let config = fan_out_config(dir.path(), url, &ids);
        spawn_worker_at(&prefix, &config, &dir.path().join("data"), free_addr())
    } else {
        spawn_baseline_with(&prefix, url, FANOUT)
    };
    let posts = (n * FANOUT) as u64;
    let done = wait_count(sink, posts, Duration::from_secs(300)).await;
    let own_us = crate::cpu_seconds(child.id()).map(|cpu| cpu * 1e6 / posts as f64);
    let broker_us = broker.per(posts as usize);
    stop(child);
    assert!(done, "fan-out: not every request arrived");
    let first = sink.first.lock().unwrap().expect("requests arrived");
    let last = sink.last.lock().unwrap().expect("requests arrived");
    Measured {
        rate: (posts as f64 - 1.0) / (last - first).as_secs_f64().max(1e-9),
        own_us,
        broker_us,
    }
}

/// The bench's worker config with [`FANOUT`] integrations, each with the
/// whole window as its concurrency (the baseline holds as many POSTs).
fn fan_out_config(dir: &std::path::Path, url: &str, ids: &[String]) -> std::path::PathBuf {
    let window = crate::inflight();
    let mut toml = format!(
        "[policy]\nallow_networks = [\"127.0.0.0/8\"]\n[worker]\nmax_inflight = {window}\n"
    );
    for id in ids {
        toml.push_str(&format!(
            "[[integration]]\nid = \"{id}\"\nurl = \"{url}/{id}\"\nconcurrency = {window}\n"
        ));
    }
    let path = dir.join("fan-out.toml");
    std::fs::write(&path, toml).expect("temp dir is writable");
    path
}

/// An ingest process (alertpost's, or the minimal one), stopped on drop.
struct Ingest {
    child: Option<Child>,
    addr: SocketAddr,
}

impl Drop for Ingest {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            stop(child);
        }
    }
}

fn start_ingest(prefix: &TestPrefix, alertpost: bool) -> Ingest {
    let addr = free_addr();
    let child = if alertpost {
        // `ALERTPOST_BENCH_WRAP_INGEST`: under a profiler, as the worker's.
        crate::wrapped("ALERTPOST_BENCH_WRAP_INGEST", worker_binary())
            .args(["ingest", "--listen", &addr.to_string()])
            .env("ALERTPOST_AMQP_URL", &prefix.url)
            .env("ALERTPOST_PREFIX", &prefix.prefix)
            .env("RUST_LOG", "warn")
            .stderr(Stdio::null())
            .spawn()
            .expect("alertpost ingest starts")
    } else {
        std::process::Command::new(std::env::current_exe().expect("own path"))
            .args([
                "minimal-ingest",
                &addr.to_string(),
                &prefix.url,
                &prefix.topology.exchange(),
            ])
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the minimal ingest starts")
    };
    Ingest {
        child: Some(child),
        addr,
    }
}

/// Waits until `addr` accepts connections (the minimal ingest has no
/// readiness route; both answer once listening and connected).
async fn listening(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < deadline, "{addr} is not listening");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The ingest, one run: `n` events posted as arrays of `per` by `clients`
/// at once (`per` = 1: single events); events/s over the whole load.
async fn ingest(n: usize, per: usize, clients: usize, alertpost: bool) -> Measured {
    let prefix = TestPrefix::new(if alertpost {
        "bench-ing-ap"
    } else {
        "bench-ing-min"
    });
    prefix.declare().await;
    let server = start_ingest(&prefix, alertpost);
    listening(server.addr).await;
    let client = reqwest::Client::new();
    let addr = server.addr;
    // One request through first: connected to the broker, not only listening.
    crate::embedded::post(&client, addr, crate::embedded::body(0, 1)).await;
    let pid = server.child.as_ref().map(Child::id);
    let own = pid.and_then(crate::cpu_seconds);
    let broker = BrokerCpu::start();
    let started = Instant::now();
    futures_util::stream::iter((0..n).step_by(per))
        .for_each_concurrent(clients, |from| {
            let client = client.clone();
            async move {
                let body = if per == 1 {
                    crate::embedded::single(from)
                } else {
                    crate::embedded::body(from, per.min(n - from))
                };
                crate::embedded::post(&client, addr, body).await
            }
        })
        .await;
    let took = started.elapsed().as_secs_f64();
    let own_us = (|| Some((crate::cpu_seconds(pid?)? - own?) * 1e6 / n as f64))();
    let broker_us = broker.per(n);
    drop(server);
    let queued = prefix.ready(&prefix.topology.events_queue()).await as usize;
    assert_eq!(queued, n + 1, "every accepted event is in the queue");
    Measured {
        rate: n as f64 / took,
        own_us,
        broker_us,
    }
}

/// The section of BENCHMARKS.md: `rounds` interleaved rounds of each.
pub async fn section(sink: &Arc<Sink>, url: &str, n: usize, rounds: usize) -> Section {
    let dir = tempfile::tempdir().expect("a temp dir");
    let file = dir.path().join("events.ndjson");
    let bodies = crate::publish::input(&file, n);
    let fan_n = n / 2;
    let single_n = n / 2;
    let (mut e2e_a, mut e2e_b) = (Vec::new(), Vec::new());
    let (mut fan_a, mut fan_b) = (Vec::new(), Vec::new());
    let (mut one_a, mut one_b, mut arr_a, mut arr_b) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // For profiling one kind of run: `ALERTPOST_BENCH_ONLY=e2e` (or fanout,
    // single, arrays), alertpost's runs only, nothing written.
    let only = std::env::var("ALERTPOST_BENCH_ONLY").ok();
    if let Some(only) = only.as_deref() {
        for r in 1..=rounds {
            let m = match only {
                "e2e" => end_to_end(sink, url, &file, &bodies, true).await,
                "fanout" => fan_out(sink, url, fan_n, true).await,
                "single" => ingest(single_n, 1, SINGLE_CLIENTS, true).await,
                "arrays" => ingest(n, ARRAY, ARRAY_CLIENTS, true).await,
                other => panic!("ALERTPOST_BENCH_ONLY={other}: e2e, fanout, single or arrays"),
            };
            eprintln!(
                "{only} run {r}: {:.0}/s, CPU µs {}",
                m.rate,
                crate::cpu(&[m], 0)
            );
        }
        return Section::empty();
    }
    for r in 1..=rounds {
        e2e_b.push(end_to_end(sink, url, &file, &bodies, false).await);
        e2e_a.push(end_to_end(sink, url, &file, &bodies, true).await);
        fan_b.push(fan_out(sink, url, fan_n, false).await);
        fan_a.push(fan_out(sink, url, fan_n, true).await);
        one_b.push(ingest(single_n, 1, SINGLE_CLIENTS, false).await);
        one_a.push(ingest(single_n, 1, SINGLE_CLIENTS, true).await);
        arr_b.push(ingest(n, ARRAY, ARRAY_CLIENTS, false).await);
        arr_a.push(ingest(n, ARRAY, ARRAY_CLIENTS, true).await);
        let i = r - 1;
        let at = |v: &[Measured]| format!("{:.0} ({} µs)", v[i].rate, crate::cpu(&v[i..=i], 0));
        eprintln!(
            "path round {r}: end to end {} vs {}/s; fan-out {} vs {} POSTs/s; \
             ingest single {} vs {}/s, arrays {} vs {}/s",
            at(&e2e_a),
            at(&e2e_b),
            at(&fan_a),
            at(&fan_b),
            at(&one_a),
            at(&one_b),
            at(&arr_a),
            at(&arr_b)
        );
    }
    let row = |name: &str, a: &[Measured], b: &[Measured]| {
        format!(
            "| {name} | {} | {:.0} | {} | {:.0} | **{:.2}** | {} | {} |\n",
            list(a),
            median(rates(a)),
            list(b),
            median(rates(b)),
            ratio(a, b),
            crate::cpu(a, 0),
            crate::cpu(b, 0)
        )
    };
    sink.measure_latency.store(false, Ordering::SeqCst);
    let markdown = format!(
        "## The whole path: end to end, fan-out, the ingest\n\n\
         Each against its minimal loop, interleaved, {rounds} rounds; a ratio is the median over \
         the rounds of alertpost's run over the same round's minimal run. Targets: ≥ 0.85 each.\n\n\
         - **End to end** ({n} events, as a user runs it): `alertpost publish` of an NDJSON file \
         while a running `alertpost worker` delivers to one integration (every attempt recorded), \
         against the bare lapin publish-with-confirms loop of the publish section while the \
         baseline consume → POST → ack loop delivers; events/s from the start of the publish to \
         the last receipt.\n\
         - **Fan-out** ({fan_n} events preloaded, each matching {FANOUT} integrations): POSTs/s \
         from the first request to the last, against the baseline loop making {FANOUT} POSTs per \
         message (at once, acked after the last).\n\
         - **The ingest**: `POST /v1/events` into `alertpost ingest` ({single_n} single events by \
         {SINGLE_CLIENTS} clients at once; {n} events as arrays of {ARRAY} by {ARRAY_CLIENTS} \
         clients), each `202` after the broker's confirm, against a minimal axum + lapin server \
         that publishes each body (each element of an array) with a confirm and answers `202`, \
         no validation; events/s over the whole load, the events queue holding every one after.\n\
         - **CPU**: the median CPU time per event (per POST for the fan-out) of the process under \
         test (end to end: the consumer, the worker or the loop) and of RabbitMQ, in µs.\n\n\
         | path | alertpost runs | median | minimal loop runs | median | ratio | CPU µs alertpost + RabbitMQ | CPU µs minimal + RabbitMQ |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- |\n\
         {}{}{}{}\n",
        row("end to end (events/s)", &e2e_a, &e2e_b),
        row(&format!("fan-out × {FANOUT} (POSTs/s)"), &fan_a, &fan_b),
        row("ingest, single events (events/s)", &one_a, &one_b),
        row(
            &format!("ingest, arrays of {ARRAY} (events/s)"),
            &arr_a,
            &arr_b
        ),
    );
    let kind = |a: &[Measured], b: &[Measured]| {
        json!({
            "alertpost": { "runs": runs(a), "median": median(rates(a)) },
            "minimal_loop": { "runs": runs(b), "median": median(rates(b)) },
            "ratio": ratio(a, b),
        })
    };
    Section {
        markdown,
        figures: json!({
            "rounds": rounds,
            "end_to_end": { "events": n, "unit": "events/s", "result": kind(&e2e_a, &e2e_b) },
            "fan_out": {
                "events": fan_n, "integrations": FANOUT, "unit": "POSTs/s",
                "result": kind(&fan_a, &fan_b),
            },
            "ingest_single": {
                "events": single_n, "clients": SINGLE_CLIENTS, "unit": "events/s",
                "result": kind(&one_a, &one_b),
            },
            "ingest_arrays": {
                "events": n, "array": ARRAY, "clients": ARRAY_CLIENTS, "unit": "events/s",
                "result": kind(&arr_a, &arr_b),
            },
        }),
        targets: vec![
            Target::ratio_at_least("end to end / minimal loop", ratio(&e2e_a, &e2e_b), 0.85),
            Target::ratio_at_least(
                format!("fan-out × {FANOUT} / minimal loop"),
                ratio(&fan_a, &fan_b),
                0.85,
            ),
            Target::ratio_at_least(
                "ingest, single events / minimal ingest",
                ratio(&one_a, &one_b),
                0.85,
            ),
            Target::ratio_at_least(
                format!("ingest, arrays of {ARRAY} / minimal ingest"),
                ratio(&arr_a, &arr_b),
                0.85,
            ),
        ],
    }
}

/// `alertpost-bench minimal-ingest ADDR AMQP_URL EXCHANGE`: the minimal
/// HTTP → publish-with-confirm server the ingest is measured against.
pub mod minimal {
    use axum::Router;
    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::StatusCode;
    use axum::routing::post;
    use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
    use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};

    use super::elements;

    struct Out {
        channel: Channel,
        exchange: String,
    }

    pub async fn run(args: &[String]) {
        let [addr, url, exchange] = args else {
            panic!("minimal-ingest ADDR AMQP_URL EXCHANGE");
        };
        let conn = Connection::connect(url, ConnectionProperties::default())
            .await
            .expect("connect");
        let channel = conn.create_channel().await.expect("a channel");
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirms");
        let out = std::sync::Arc::new(Out {
            channel,
            exchange: exchange.clone(),
        });
        let app = Router::new()
            .route("/v1/events", post(events))
            .with_state(out);
        let listener = tokio::net::TcpListener::bind(addr.as_str())
            .await
            .expect("bind");
        axum::serve(listener, app).await.expect("serve");
    }

    async fn events(State(out): State<std::sync::Arc<Out>>, body: Bytes) -> StatusCode {
        let docs = if body.first() == Some(&b'[') {
            elements(&body)
        } else {
            vec![&body[..]]
        };
        let mut confirms = Vec::with_capacity(docs.len());
        for doc in docs {
            match out
                .channel
                .basic_publish(
                    out.exchange.as_str().into(),
                    "bench".into(),
                    BasicPublishOptions::default(),
                    doc,
                    BasicProperties::default().with_delivery_mode(2),
                )
                .await
            {
                Ok(c) => confirms.push(c),
                Err(_) => return StatusCode::SERVICE_UNAVAILABLE,
            }
        }
        for c in confirms {
            if c.await.is_err() {
                return StatusCode::SERVICE_UNAVAILABLE;
            }
        }
        StatusCode::ACCEPTED
    }
}

/// The top-level elements of a JSON array, found by depth alone (no
/// validation: the minimal loop trusts its input).
fn elements(array: &[u8]) -> Vec<&[u8]> {
    let (mut out, mut depth, mut start) = (Vec::new(), 0usize, 1usize);
    let (mut in_string, mut escaped) = (false, false);
    for (i, &b) in array.iter().enumerate() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => depth += 1,
            b']' | b'}' if depth == 1 => {
                if i > start {
                    out.push(array[start..i].trim_ascii());
                }
                break;
            }
            b']' | b'}' => depth -= 1,
            b',' if depth == 1 => {
                out.push(array[start..i].trim_ascii());
                start = i + 1;
            }
            _ => {}
        }
    }
    out
}
