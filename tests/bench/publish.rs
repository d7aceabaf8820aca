//! The publish side alone (issue 16, target 3): `alertpost publish` of an
//! NDJSON file and `Producer::publish_all` against a bare lapin loop that
//! publishes the same bodies with confirms, the same number awaited at once.
//! Each run has a prefix of its own (declared first, deleted after), and
//! the events queue must hold every event at the end. `alertpost publish`
//! also runs on a quarter of the input, for how its time grows.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use alertpost_producer::Producer;
use alertpost_tests::TestPrefix;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Connection, ConnectionProperties};

use crate::{
    BrokerCpu, Measured, children_cpu_seconds, cpu, cpu_seconds, exe_dir, list, median, rates,
    sample_event,
};
use serde_json::json;

use crate::report::{Section, Target, runs};

/// Confirms awaited at once by the bare loop: the producer's window.
const WINDOW: usize = 512;

/// Writes `n` sample events as NDJSON; returns each one's routing key and
/// bytes as the bare loop publishes them (prepared the way the producer
/// prepares them, so both send the same documents).
pub(crate) fn input(path: &Path, n: usize) -> Vec<(String, Vec<u8>)> {
    let mut text = String::new();
    let mut bodies = Vec::with_capacity(n);
    let now = time::OffsetDateTime::now_utc();
    for i in 0..n {
        let e = sample_event(i);
        text.push_str(&String::from_utf8(e.to_json()).expect("JSON is text"));
        text.push('\n');
        let mut prepared = e;
        prepared.prepare(now).expect("a valid sample");
        bodies.push((prepared.routing_key(), prepared.to_json()));
    }
    std::fs::write(path, text).expect("the temp dir is writable");
    bodies
}

async fn fresh(name: &str) -> TestPrefix {
    let prefix = TestPrefix::new(name);
    prefix.declare().await;
    prefix
}

/// CPU readings at the start of a run: the publisher's (this process, or
/// its waited-for children for a command) and the broker's.
struct Cpu {
    publisher: fn() -> Option<f64>,
    publisher_at: Option<f64>,
    broker: BrokerCpu,
}

impl Cpu {
    fn start(publisher: fn() -> Option<f64>) -> Cpu {
        Cpu {
            publisher,
            publisher_at: publisher(),
            broker: BrokerCpu::start(),
        }
    }

    fn run(self, n: usize, took: f64) -> Measured {
        Measured {
            rate: n as f64 / took,
            own_us: (|| Some(((self.publisher)()? - self.publisher_at?) * 1e6 / n as f64))(),
            broker_us: self.broker.per(n),
        }
    }
}

fn own_cpu() -> Option<f64> {
    cpu_seconds(std::process::id())
}

async fn check_all_there(prefix: &TestPrefix, n: usize) {
    let got = prefix.ready(&prefix.topology.events_queue()).await as usize;
    assert_eq!(got, n, "every event is in the queue");
}

/// `alertpost publish FILE`, start to exit.
async fn cli(path: &Path, n: usize) -> Measured {
    let prefix = fresh("bench-pub-cli").await;
    let cpu = Cpu::start(children_cpu_seconds);
    let started = Instant::now();
    let out = Command::new(exe_dir().join("alertpost"))
        .args(["--prefix", &prefix.prefix, "--amqp", &prefix.url, "publish"])
        .arg(path)
        .output()
        .expect("alertpost runs");
    let took = started.elapsed().as_secs_f64();
    let run = cpu.run(n, took);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    check_all_there(&prefix, n).await;
    run
}

/// `Producer::publish_all` of the parsed events, in one call (its connect
/// included, as the bare loop's).
async fn library(n: usize) -> Measured {
    let prefix = fresh("bench-pub-lib").await;
    let events: Vec<_> = (0..n).map(sample_event).collect();
    let cpu = Cpu::start(own_cpu);
    let started = Instant::now();
    let producer = Producer::connect(&prefix.url, &prefix.prefix, "bench-pub")
        .await
        .expect("RabbitMQ is reachable");
    producer.publish_all(events).await.expect("published");
    let took = started.elapsed().as_secs_f64();
    let run = cpu.run(n, took);
    producer.close().await;
    check_all_there(&prefix, n).await;
    run
}

/// The bare loop: publish each body to the events exchange, `WINDOW`
/// confirms awaited at once.
async fn bare(bodies: &[(String, Vec<u8>)]) -> Measured {
    let prefix = fresh("bench-pub-bare").await;
    let cpu = Cpu::start(own_cpu);
    let started = Instant::now();
    bare_into(&prefix, bodies).await;
    let took = started.elapsed().as_secs_f64();
    let run = cpu.run(bodies.len(), took);
    check_all_there(&prefix, bodies.len()).await;
    run
}

/// The bare loop's publishing, into `prefix`'s exchange (connect included).
pub(crate) async fn bare_into(prefix: &TestPrefix, bodies: &[(String, Vec<u8>)]) {
    let conn = Connection::connect(&prefix.url, ConnectionProperties::default())
        .await
        .expect("connect");
    let channel = conn.create_channel().await.expect("a channel");
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    let exchange = prefix.topology.exchange();
    for window in bodies.chunks(WINDOW) {
        let mut pending = Vec::with_capacity(window.len());
        for (key, body) in window {
            let confirm = channel
                .basic_publish(
                    exchange.as_str().into(),
                    key.as_str().into(),
                    BasicPublishOptions::default(),
                    body,
                    BasicProperties::default().with_delivery_mode(2),
                )
                .await
                .expect("published");
            pending.push(confirm);
        }
        for confirm in pending {
            confirm.await.expect("confirmed");
        }
    }
    let _ = conn.close(200, "done".into()).await;
}

/// `runs` interleaved rounds of the three, and the quarter-size runs.
pub async fn section(n: usize, rounds: usize) -> Section {
    let dir = tempfile::tempdir().expect("a temp dir");
    let full = dir.path().join("events.ndjson");
    let quarter = dir.path().join("quarter.ndjson");
    let bodies = input(&full, n);
    input(&quarter, n / 4);
    let (mut b, mut c, mut l, mut q) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for r in 1..=rounds {
        b.push(bare(&bodies).await);
        c.push(cli(&full, n).await);
        l.push(library(n).await);
        q.push(cli(&quarter, n / 4).await);
        eprintln!(
            "publish round {r}: bare {:.0}/s ({} µs), alertpost publish {:.0}/s ({} µs), Producer::publish_all {:.0}/s ({} µs), alertpost publish of {} {:.0}/s",
            b[r - 1].rate,
            cpu(&b[r - 1..r], 1),
            c[r - 1].rate,
            cpu(&c[r - 1..r], 1),
            l[r - 1].rate,
            cpu(&l[r - 1..r], 1),
            n / 4,
            q[r - 1].rate
        );
    }
    let ratio = |v: &[Measured]| {
        let per: Vec<f64> = v
            .iter()
            .zip(&b)
            .map(|(x, base)| x.rate / base.rate)
            .collect();
        median(per)
    };
    let (cli_ratio, library_ratio, quarter_ratio) = (ratio(&c), ratio(&l), ratio(&q));
    let growth = median(rates(&q)) / median(rates(&c));
    let markdown = format!(
        "## The publish side: `alertpost publish` and the producer library against a bare loop\n\n\
         {n} sample events (about {} bytes each): `alertpost publish` of them as an NDJSON file (the \
         whole command: start, read, parse, normalize, connect, publish, exit), `Producer::connect` and \
         `Producer::publish_all` of them in one call, and a bare lapin loop publishing the same prepared bodies to the same \
         exchange with confirms, {WINDOW} awaited at once (the producer's window). Each run on a fresh \
         prefix; the events queue holds all {n} after each. Interleaved, {rounds} rounds; ratios are the \
         medians of each round's run over that round's bare loop. Target: ≥ 0.9. The CPU column is the \
         median CPU time per event of the publishing process (the command, or the bench's own process \
         for the library and the loop) and of RabbitMQ over the same run.\n\n\
         | publisher | runs (events/s) | median | ratio to the bare loop | CPU µs per event (publisher + RabbitMQ) |\n| --- | --- | --- | --- | --- |\n\
         | bare lapin loop | {} | {:.0} | 1.00 | {} |\n\
         | `alertpost publish` | {} | {:.0} | **{:.2}** | {} |\n\
         | `Producer::publish_all` | {} | {:.0} | **{:.2}** | {} |\n\
         | `alertpost publish`, a quarter of the input ({} events) | {} | {:.0} | {:.2} | {} |\n\n\
         Linear in the input: the quarter-size runs go at {:.2} × the full-size rate (a quadratic \
         command would go 4 × faster per event on a quarter of the input).\n\n",
        bodies.first().map_or(0, |(_, b)| b.len()),
        list(&b),
        median(rates(&b)),
        cpu(&b, 1),
        list(&c),
        median(rates(&c)),
        cli_ratio,
        cpu(&c, 1),
        list(&l),
        median(rates(&l)),
        library_ratio,
        cpu(&l, 1),
        n / 4,
        list(&q),
        median(rates(&q)),
        quarter_ratio,
        cpu(&q, 1),
        growth,
    );
    let kind = |v: &[Measured], ratio: f64| json!({ "runs": runs(v), "median": median(rates(v)), "ratio": ratio });
    Section {
        markdown,
        figures: json!({
            "events": n,
            "rounds": rounds,
            "bare_loop": kind(&b, 1.0),
            "alertpost_publish": kind(&c, cli_ratio),
            "producer_publish_all": kind(&l, library_ratio),
            "alertpost_publish_quarter": kind(&q, quarter_ratio),
            "quarter_over_full_rate": growth,
        }),
        targets: vec![
            Target::ratio_at_least("`alertpost publish` / bare publish loop", cli_ratio, 0.9),
            Target::ratio_at_least(
                "`Producer::publish_all` / bare publish loop",
                library_ratio,
                0.9,
            ),
            // Linear: a quarter of the input goes at about the full rate per
            // event (a quadratic command: 4 ×).
            Target::at_most(
                "publish linear: quarter-input rate / full-input rate (this bench's test; quadratic: 4)",
                growth,
                1.5,
                "×",
            ),
        ],
    }
}
