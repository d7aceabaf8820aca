//! Before and after: another build of alertpost (`ALERTPOST_BENCH_BEFORE`,
//! the build before a change) beside this one, in the same run, on the
//! user's paths: the worker draining a queue (throughput), every event to
//! 4 integrations (fan-out), `alertpost publish` while the worker delivers
//! (end to end), and the p99 from publish to receipt at 200/s. Each round
//! runs the build before, then this one; a figure is the median over the
//! rounds of each round's ratio, so the machine's drift between rounds
//! cancels. The target: the new build within 5 % of the old on each rate.
//! The p99 is shown, not held to 5 %: at 200/s it is the 20th-worst of
//! 2 000 receipts, a few milliseconds that one scheduling hiccup on a
//! shared core moves by more than that.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::json;

use crate::report::{Section, Target};
use crate::{Measured, Sink, median, with_worker_binary};

/// The build before, when given.
pub fn before() -> Option<PathBuf> {
    std::env::var_os("ALERTPOST_BENCH_BEFORE").map(PathBuf::from)
}

/// One measure, old and new, round by round.
#[derive(Default)]
struct Pair {
    old: Vec<Measured>,
    new: Vec<Measured>,
}

impl Pair {
    /// The median over the rounds of new ÷ old.
    fn ratio(&self) -> f64 {
        median(
            self.new
                .iter()
                .zip(&self.old)
                .map(|(n, o)| n.rate / o.rate)
                .collect(),
        )
    }

    fn row(&self, name: &str, unit: &str) -> String {
        let rates = |v: &[Measured]| {
            v.iter()
                .map(|m| format!("{:.0}", m.rate))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let per_round: Vec<String> = self
            .new
            .iter()
            .zip(&self.old)
            .map(|(n, o)| format!("{:.2}", n.rate / o.rate))
            .collect();
        format!(
            "| {name} ({unit}) | {} | {} | {} | {} | **{:.2}** ({}) |\n",
            rates(&self.old),
            rates(&self.new),
            crate::cpu(&self.old, 1),
            crate::cpu(&self.new, 1),
            self.ratio(),
            per_round.join(", ")
        )
    }

    fn json(&self) -> serde_json::Value {
        json!({
            "old": crate::rates(&self.old),
            "new": crate::rates(&self.new),
            "ratio": self.ratio(),
        })
    }
}

/// Runs `f` with `bin` as the worker (and `alertpost publish`) binary.
async fn with<T>(bin: &Path, f: impl Future<Output = T>) -> T {
    with_worker_binary(Some(bin.to_owned()), f).await
}

pub async fn section(sink: &Arc<Sink>, url: &str, n: usize, rounds: usize) -> Section {
    let Some(old) = before() else {
        return Section::empty();
    };
    let new = crate::worker_binary();
    let dir = tempfile::tempdir().expect("a temp dir");
    let file = dir.path().join("events.ndjson");
    let bodies = crate::publish::input(&file, n);
    let (mut drain, mut fan, mut e2e) = (Pair::default(), Pair::default(), Pair::default());
    let (mut p99_old, mut p99_new) = (Vec::new(), Vec::new());
    for r in 1..=rounds {
        for (bin, is_new) in [(&old, false), (&new, true)] {
            let t = with(bin, crate::throughput(sink, url, n, true)).await;
            let t = Measured {
                rate: t.rate,
                own_us: t.cpu_us,
                broker_us: None,
            };
            let f = with(bin, crate::path::fan_out(sink, url, n / 2, true)).await;
            let e = with(
                bin,
                crate::path::end_to_end(sink, url, &file, &bodies, true),
            )
            .await;
            let l = with(bin, crate::latency(sink, url, 200, 10, true)).await;
            let (pair_of, p99s) = if is_new {
                ((&mut drain.new, &mut fan.new, &mut e2e.new), &mut p99_new)
            } else {
                ((&mut drain.old, &mut fan.old, &mut e2e.old), &mut p99_old)
            };
            pair_of.0.push(t);
            pair_of.1.push(f);
            pair_of.2.push(e);
            p99s.push(l.p99);
            eprintln!(
                "before/after round {r}, {}: throughput {:.0}/s, fan-out {:.0} POSTs/s, end to end {:.0}/s, p99 at 200/s {:.2} ms",
                if is_new { "new" } else { "old" },
                t.rate,
                f.rate,
                e.rate,
                l.p99
            );
        }
    }
    let targets = vec![
        Target::ratio_at_least("new build / old: worker throughput", drain.ratio(), 0.95),
        Target::ratio_at_least("new build / old: fan-out", fan.ratio(), 0.95),
        Target::ratio_at_least("new build / old: end to end", e2e.ratio(), 0.95),
    ];
    let fmt = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let markdown = format!(
        "## Before and after\n\n\
         The build before the change (`ALERTPOST_BENCH_BEFORE={}`) beside this one, {rounds} rounds, \
         each running the old build then the new; the ratio is the median over the rounds of each \
         round's new ÷ old (per round in brackets). CPU is µs per event (per POST for fan-out) of the \
         worker + RabbitMQ, median.\n\n\
         | measure | old (runs) | new (runs) | old CPU | new CPU | new ÷ old |\n\
         | --- | --- | --- | --- | --- | --- |\n{}{}{}\
         | p99 publish → receipt at 200/s (ms) | {} | {} | | | median {:.2} vs {:.2} |\n\n\
         The rates are held to 0.95 (the targets table); the p99 is shown: a few milliseconds that \
         one scheduling hiccup on a shared core moves by more than 5 %.\n\n",
        old.display(),
        drain.row("worker throughput", "events/s"),
        fan.row("fan-out to 4", "POSTs/s"),
        e2e.row("end to end", "events/s"),
        fmt(&p99_old),
        fmt(&p99_new),
        median(p99_new.clone()),
        median(p99_old.clone()),
    );
    Section {
        markdown,
        figures: json!({
            "before": old.display().to_string(),
            "throughput": drain.json(),
            "fan_out": fan.json(),
            "end_to_end": e2e.json(),
            "p99_ms_at_200": {"old": p99_old, "new": p99_new},
        }),
        targets,
    }
}
