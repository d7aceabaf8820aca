//! alertpost's metrics, with the `prometheus` crate.
//!
//! | name | type | labels | from |
//! | --- | --- | --- | --- |
//! | `alertpost_events_published_total` | counter | `source` | ingest |
//! | `alertpost_events_consumed_total` | counter | `source` | worker |
//! | `alertpost_deliveries_total` | counter | `integration`, `outcome` (delivered, retried, deferred, dead, filtered, skipped_duplicate) | worker |
//! | `alertpost_delivery_attempts_total` | counter | `integration`, `code` (1xx…5xx, timeout, connect, policy, token, error, other) | worker |
//! | `alertpost_delivery_duration_seconds` | histogram | `integration` | worker |
//! | `alertpost_end_to_end_seconds` | histogram | `integration` (event `received_at` → delivered) | worker |
//! | `alertpost_retries_scheduled_total` | counter | `integration`, `tier` | worker |
//! | `alertpost_dead_letters_total` | counter | `integration`, `reason` | worker |
//! | `alertpost_inflight_deliveries` | gauge | `integration` | worker |
//! | `alertpost_circuit_open` | gauge | `integration` | worker |
//! | `alertpost_store_bytes` | gauge | | worker |
//! | `alertpost_broker_connected` | gauge | | both |
//! | `alertpost_topology_redeclared_total` | counter | | worker: a queue was found missing and declared again |
//! | `alertpost_config_reloads_total` | counter | `result` (applied, refused) | worker: configurations sent by SIGHUP |
//! | `process_*` | | | both |
//!
//! Labels are bounded: integration ids, fixed outcome and code sets, tier
//! names, dead-letter reasons; never URLs or event ids. An event's `source`
//! is the one label producers choose, so each process keeps the first
//! [`MAX_SOURCES`] values it sees and counts the rest as `other`. The hot
//! path holds resolved series ([`IntegrationMetrics`]), so counting costs no
//! label lookup.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use alertpost_event::job::{AttemptCode, DeadReason};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Seconds: from 5 ms to 30 s, the range of webhook answers.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// How one delivery ended this time: the `outcome` of
/// `alertpost_deliveries_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// Handed to a wait, to be tried again.
    Retried,
    /// Could not start when due (its integration at its concurrency, its
    /// circuit open): handed to its lane.
    Deferred,
    Dead,
    /// The integration's `match` did not hold.
    Filtered,
    /// Already finished or handed on, per the journal.
    SkippedDuplicate,
    /// Never sent, or not sent again: a newer event of its alert came
    /// first (`order = "latest"`).
    Superseded,
}

impl Outcome {
    pub const ALL: [Outcome; 7] = [
        Outcome::Delivered,
        Outcome::Retried,
        Outcome::Deferred,
        Outcome::Dead,
        Outcome::Filtered,
        Outcome::SkippedDuplicate,
        Outcome::Superseded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Retried => "retried",
            Outcome::Deferred => "deferred",
            Outcome::Dead => "dead",
            Outcome::Filtered => "filtered",
            Outcome::SkippedDuplicate => "skipped_duplicate",
            Outcome::Superseded => "superseded",
        }
    }
}

/// Distinct `source` label values a process exports; later ones are `other`.
pub const MAX_SOURCES: usize = 100;

/// A counter by `source`, with at most [`MAX_SOURCES`] series.
#[derive(Clone)]
struct BySource {
    counters: IntCounterVec,
    seen: Arc<RwLock<HashSet<String>>>,
}

impl BySource {
    fn new(counters: IntCounterVec) -> BySource {
        BySource {
            counters,
            seen: Arc::default(),
        }
    }

    fn inc(&self, source: &str) {
        self.counters.with_label_values(&[self.label(source)]).inc();
    }

    fn label<'a>(&self, source: &'a str) -> &'a str {
        // A poisoned lock still holds a valid set.
        let known = match self.seen.read() {
            Ok(s) => s.contains(source),
            Err(p) => p.into_inner().contains(source),
        };
        if known {
            return source;
        }
        let mut seen = self.seen.write().unwrap_or_else(|p| p.into_inner());
        if seen.len() < MAX_SOURCES {
            seen.insert(source.to_owned());
            source
        } else {
            "other"
        }
    }
}

/// The families a worker exports.
#[derive(Clone)]
pub struct WorkerMetrics {
    registry: Registry,
    events_consumed: BySource,
    deliveries: IntCounterVec,
    attempts: IntCounterVec,
    duration: HistogramVec,
    end_to_end: HistogramVec,
    retries: IntCounterVec,
    dead_letters: IntCounterVec,
    inflight: IntGaugeVec,
    circuit: IntGaugeVec,
    pub store_bytes: IntGauge,
    pub broker_connected: IntGauge,
    pub broker_blocked: IntGauge,
    /// The shards whose consumer this worker runs (active or standby).
    pub shards_held: IntGauge,
    pub topology_redeclared: IntCounter,
    /// Reloads applied, and refused (the config loads, but its runtime
    /// cannot be built: a TLS file that changed, a proxy...).
    pub reloads_applied: IntCounter,
    pub reloads_refused: IntCounter,
    pub handoff_failures: IntCounter,
    pub requeued: IntCounter,
    pub store_dropped: IntCounter,
}

/// The families the ingest exports.
#[derive(Clone)]
pub struct IngestMetrics {
    registry: Registry,
    events_published: BySource,
    pub broker_connected: IntGauge,
    pub broker_blocked: IntGauge,
}

/// One integration's series, resolved once (at load and on reload).
#[derive(Clone)]
pub struct IntegrationMetrics {
    /// By [`Outcome`], in the order of [`Outcome::ALL`].
    outcomes: Vec<IntCounter>,
    /// By [`AttemptCode`], in the order of [`AttemptCode::ALL`].
    codes: Vec<IntCounter>,
    pub duration: Histogram,
    pub end_to_end: Histogram,
    /// Per delay tier, in the topology's order.
    retries: Vec<IntCounter>,
    dead: Vec<(DeadReason, IntCounter)>,
    pub inflight: IntGauge,
    pub circuit_open: IntGauge,
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let v = IntCounterVec::new(Opts::new(name, help), labels)
        .expect("metric names and labels are valid");
    registry
        .register(Box::new(v.clone()))
        .expect("each family is registered once");
    v
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let v =
        IntGaugeVec::new(Opts::new(name, help), labels).expect("metric names and labels are valid");
    registry
        .register(Box::new(v.clone()))
        .expect("each family is registered once");
    v
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("metric names are valid");
    registry
        .register(Box::new(c.clone()))
        .expect("each family is registered once");
    c
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("metric names are valid");
    registry
        .register(Box::new(g.clone()))
        .expect("each family is registered once");
    g
}

fn histogram_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec());
    let v = HistogramVec::new(opts, labels).expect("metric names and labels are valid");
    registry
        .register(Box::new(v.clone()))
        .expect("each family is registered once");
    v
}

fn registry() -> Registry {
    let registry = Registry::new();
    #[cfg(target_os = "linux")]
    {
        // Process metrics: resident memory, CPU, open files.
        let _ = registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ));
    }
    registry
}

fn encode(registry: &Registry) -> String {
    let mut out = Vec::new();
    // Encoding into a Vec does not fail for well-formed families.
    let _ = TextEncoder::new().encode(&registry.gather(), &mut out);
    String::from_utf8(out).unwrap_or_default()
}

impl WorkerMetrics {
    /// The worker's series; `backend` names its broker ("RabbitMQ", "the
    /// embedded queue"), in their help.
    pub fn new(backend: &str) -> WorkerMetrics {
        let r = registry();
        let reloads = counter_vec(
            &r,
            "alertpost_config_reloads_total",
            "Configurations loaded on SIGHUP: applied, or refused by the worker (it keeps the one it has). A file that does not load is refused before and not counted.",
            &["result"],
        );
        WorkerMetrics {
            events_consumed: BySource::new(counter_vec(
                &r,
                "alertpost_events_consumed_total",
                "Events taken from the events queue.",
                &["source"],
            )),
            deliveries: counter_vec(
                &r,
                "alertpost_deliveries_total",
                "Deliveries by how they ended this time: delivered, retried (handed to a wait), deferred (could not start: handed to the integration's lane), dead, filtered (an event of a kind the integration takes that its send_resolved or match left out), skipped_duplicate (already finished or handed on, per the journal).",
                &["integration", "outcome"],
            ),
            attempts: counter_vec(
                &r,
                "alertpost_delivery_attempts_total",
                "HTTP attempts by result: the status class, or timeout, connect, policy, token, error.",
                &["integration", "code"],
            ),
            duration: histogram_vec(
                &r,
                "alertpost_delivery_duration_seconds",
                "Time of one attempt, connect to last byte.",
                &["integration"],
            ),
            end_to_end: histogram_vec(
                &r,
                "alertpost_end_to_end_seconds",
                "From the event's received_at to its delivery.",
                &["integration"],
            ),
            retries: counter_vec(
                &r,
                "alertpost_retries_scheduled_total",
                "Deliveries handed to a delay tier.",
                &["integration", "tier"],
            ),
            dead_letters: counter_vec(
                &r,
                "alertpost_dead_letters_total",
                "Deliveries (and unreadable messages) sent to the dead queue, by reason.",
                &["integration", "reason"],
            ),
            inflight: gauge_vec(
                &r,
                "alertpost_inflight_deliveries",
                "Attempts in progress.",
                &["integration"],
            ),
            circuit: gauge_vec(
                &r,
                "alertpost_circuit_open",
                "1 while the integration's circuit breaker is open.",
                &["integration"],
            ),
            store_bytes: gauge(
                &r,
                "alertpost_store_bytes",
                "Bytes the worker's store takes on disk.",
            ),
            broker_connected: gauge(
                &r,
                "alertpost_broker_connected",
                &format!("1 while connected to {backend}."),
            ),
            broker_blocked: gauge(
                &r,
                "alertpost_broker_blocked",
                &format!(
                    "1 while {backend} blocks the worker's publishes (a memory or disk alarm) or its publishing connection is down: the worker takes no new message meanwhile."
                ),
            ),
            shards_held: gauge(
                &r,
                "alertpost_shards_held",
                "Shards of the alerts with a key this worker consumes (RabbitMQ: its share among the workers it hears of; the broker's single active consumer makes it their one worker).",
            ),
            topology_redeclared: counter(
                &r,
                "alertpost_topology_redeclared_total",
                "Times a publish found its queue missing (deleted under the worker) and the topology was declared again.",
            ),
            reloads_applied: reloads.with_label_values(&["applied"]),
            reloads_refused: reloads.with_label_values(&["refused"]),
            handoff_failures: counter(
                &r,
                "alertpost_handoff_failures_total",
                "Publishes of a hand-off (to a lane, a wait or the dead queue) not confirmed; each is tried again after a pause.",
            ),
            requeued: counter(
                &r,
                "alertpost_messages_requeued_total",
                "Messages given back to their queue unfinished (a hand-off that kept failing, a panic); each counts toward the queue's delivery limit.",
            ),
            store_dropped: counter(
                &r,
                "alertpost_store_records_dropped_total",
                "Attempt records dropped because the store could not keep up (deliveries are never slowed for the record).",
            ),
            registry: r,
        }
    }

    /// The series of one integration, created at zero so dashboards show
    /// zeros, not gaps. `tiers` are the tier names, in order.
    pub fn integration(&self, id: &str, tiers: &[String]) -> IntegrationMetrics {
        IntegrationMetrics {
            outcomes: Outcome::ALL
                .iter()
                .map(|o| self.deliveries.with_label_values(&[id, o.as_str()]))
                .collect(),
            codes: AttemptCode::ALL
                .iter()
                .map(|c| self.attempts.with_label_values(&[id, c.as_str()]))
                .collect(),
            duration: self.duration.with_label_values(&[id]),
            end_to_end: self.end_to_end.with_label_values(&[id]),
            retries: tiers
                .iter()
                .map(|t| self.retries.with_label_values(&[id, t]))
                .collect(),
            dead: DeadReason::ALL
                .iter()
                .filter(|r| **r != DeadReason::Undecodable)
                .map(|r| (*r, self.dead_letters.with_label_values(&[id, r.as_str()])))
                .collect(),
            inflight: self.inflight.with_label_values(&[id]),
            circuit_open: self.circuit.with_label_values(&[id]),
        }
    }

    pub fn consumed(&self, source: &str) {
        self.events_consumed.inc(source);
    }

    /// A dead letter with no integration: a message that could not be read.
    pub fn undecodable(&self) {
        self.dead_letters
            .with_label_values(&["", DeadReason::Undecodable.as_str()])
            .inc();
    }

    /// A dead letter of an integration the worker delivers nothing to (not
    /// in the configuration, or disabled): no series of its own.
    pub fn dead_elsewhere(&self, integration: &str, reason: DeadReason) {
        self.dead_letters
            .with_label_values(&[integration, reason.as_str()])
            .inc();
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        encode(&self.registry)
    }
}

impl IntegrationMetrics {
    /// Deliveries that ended `outcome` since the process started.
    pub fn count(&self, outcome: Outcome) -> u64 {
        Outcome::ALL
            .iter()
            .position(|o| *o == outcome)
            .map_or(0, |i| self.outcomes[i].get())
    }

    pub fn outcome(&self, outcome: Outcome) {
        // Every variant has its series (made from `Outcome::ALL`).
        if let Some(i) = Outcome::ALL.iter().position(|o| *o == outcome) {
            self.outcomes[i].inc();
        }
    }

    pub fn attempt(&self, code: AttemptCode) {
        if let Some(i) = AttemptCode::ALL.iter().position(|c| *c == code) {
            self.codes[i].inc();
        }
    }

    /// `tier` is the tier's place in the topology.
    pub fn retry(&self, tier: usize) {
        if let Some(c) = self.retries.get(tier) {
            c.inc();
        }
    }

    pub fn dead(&self, reason: DeadReason) {
        if let Some((_, c)) = self.dead.iter().find(|(r, _)| *r == reason) {
            c.inc();
        }
    }
}

impl std::fmt::Debug for WorkerMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WorkerMetrics")
    }
}

impl std::fmt::Debug for IngestMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IngestMetrics")
    }
}

impl std::fmt::Debug for IntegrationMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IntegrationMetrics")
    }
}

impl IngestMetrics {
    /// The ingest's series; `backend` names what it publishes to
    /// ("RabbitMQ", "the embedded queue"), in their help.
    pub fn new(backend: &str) -> IngestMetrics {
        let r = registry();
        IngestMetrics {
            events_published: BySource::new(counter_vec(
                &r,
                "alertpost_events_published_total",
                &format!("Events published, stored by {backend} (confirmed, or on disk)."),
                &["source"],
            )),
            broker_connected: gauge(
                &r,
                "alertpost_broker_connected",
                &format!("1 while connected to {backend}."),
            ),
            broker_blocked: gauge(
                &r,
                "alertpost_broker_blocked",
                &format!("1 while {backend} blocks publishing: events are answered 503."),
            ),
            registry: r,
        }
    }

    pub fn published(&self, source: &str) {
        self.events_published.inc(source);
    }

    pub fn encode(&self) -> String {
        encode(&self.registry)
    }
}

/// The content type of [`WorkerMetrics::encode`] and [`IngestMetrics::encode`].
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integration_series_start_at_zero_and_count() {
        let m = WorkerMetrics::new("RabbitMQ");
        let i = m.integration("hook", &["1s".into(), "5s".into()]);
        let text = m.encode();
        assert!(
            text.contains(
                r#"alertpost_deliveries_total{integration="hook",outcome="delivered"} 0"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"alertpost_retries_scheduled_total{integration="hook",tier="5s"} 0"#)
        );
        assert!(
            text.contains(
                r#"alertpost_dead_letters_total{integration="hook",reason="exhausted"} 0"#
            )
        );
        i.outcome(Outcome::Delivered);
        i.attempt(AttemptCode::Success);
        i.retry(1);
        i.dead(DeadReason::Status);
        i.duration.observe(0.02);
        let text = m.encode();
        assert!(
            text.contains(
                r#"alertpost_deliveries_total{integration="hook",outcome="delivered"} 1"#
            )
        );
        assert!(
            text.contains(r#"alertpost_delivery_attempts_total{code="2xx",integration="hook"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"alertpost_retries_scheduled_total{integration="hook",tier="5s"} 1"#)
        );
        assert!(
            text.contains(r#"alertpost_dead_letters_total{integration="hook",reason="status"} 1"#)
        );
        assert!(text.contains(
            r#"alertpost_delivery_duration_seconds_bucket{integration="hook",le="0.025"} 1"#
        ));
        assert!(text.contains("process_resident_memory_bytes"));
    }

    #[test]
    fn sources_beyond_the_bound_count_as_other() {
        let m = IngestMetrics::new("RabbitMQ");
        for i in 0..MAX_SOURCES + 5 {
            m.published(&format!("s{i}"));
        }
        m.published("s0");
        let text = m.encode();
        assert!(text.contains(r#"alertpost_events_published_total{source="s0"} 2"#));
        let last = format!(r#"{{source="s{}"}}"#, MAX_SOURCES - 1);
        assert!(text.contains(&last), "{text}");
        assert!(!text.contains(&format!(r#"{{source="s{MAX_SOURCES}"}}"#)));
        assert!(text.contains(r#"alertpost_events_published_total{source="other"} 5"#));
    }
}
