//! Operational events: when one of its integrations changes state, the
//! worker publishes an event about it through its own pipeline (the events
//! exchange, confirmed), for the integrations that opt in with
//! `kinds = ["integration.status"]`.
//!
//! The states, per integration and per worker:
//! - `error` when its circuit opens;
//! - `warning` when one of its deliveries is dead-lettered while its
//!   circuit is closed;
//! - `active` when it delivers again after either (the state it starts in,
//!   which raises nothing).
//!
//! A change raises one event; the same state found again (another dead
//! letter while in `warning`) is raised again only once
//! `[operational] repeat_interval` has passed since it was last raised.
//! What happens to operational events themselves never raises another:
//! their attempts, deliveries and dead letters change no state, so there
//! is no loop. The events wait in a bounded queue for a session that can
//! publish (one that fails is tried again, and kept over a reconnect); a
//! full queue drops the newest with an error in the log. They live in the
//! worker's memory until published: a worker killed first loses them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use alertpost_event::{EVENT_SCHEMA, Event, Severity, Status};
use alertpost_seam::{Outgoing, Session};
use serde_json::json;
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The kind of the events raised here.
pub const KIND: &str = "integration.status";
/// Their source.
pub const SOURCE: &str = "alertpost";
/// Events waiting for a session that can publish.
const QUEUE: usize = 256;
/// The first pause after a publish that failed; it doubles up to
/// [`PAUSE_MAX`].
const PAUSE: Duration = Duration::from_secs(1);
const PAUSE_MAX: Duration = Duration::from_secs(30);

/// An integration's state, as operational events report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Active,
    Warning,
    Error,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Active => "active",
            State::Warning => "warning",
            State::Error => "error",
        }
    }
}

/// One integration's track.
#[derive(Debug, Clone)]
struct Track {
    state: State,
    since: OffsetDateTime,
    /// When the current state was last raised.
    raised: Option<Instant>,
    /// Why it is in this state.
    reason: String,
}

/// An integration's state as the console shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    pub state: State,
    /// Since when; `None`: active since the worker started.
    pub since: Option<OffsetDateTime>,
    pub reason: Option<String>,
}

/// Whether `to`, found now, is raised; and the state afterwards. Pure.
fn transition(
    current: State,
    raised: Option<Instant>,
    to: State,
    now: Instant,
    repeat: Duration,
) -> (bool, State) {
    match (current, to) {
        (same, to) if same == to => {
            // Active again and again is no news; the others repeat.
            let due =
                to != State::Active && raised.is_none_or(|at| now.duration_since(at) >= repeat);
            (due, same)
        }
        (_, to) => (true, to),
    }
}

pub(crate) struct Operational {
    repeat: Duration,
    tracks: Mutex<HashMap<String, Track>>,
    queue: mpsc::Sender<Event>,
    /// Taken by the publishing task of the session in place.
    pending: tokio::sync::Mutex<mpsc::Receiver<Event>>,
    /// One taken off the queue and not yet published when its session
    /// ended: the next session's goes first.
    unsent: Mutex<Option<Event>>,
    /// Integrations not `active`: while none are, a delivery (every one
    /// on the hot path) takes no lock.
    degraded: AtomicUsize,
}

impl std::fmt::Debug for Operational {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Operational")
            .field("repeat", &self.repeat)
            .finish_non_exhaustive()
    }
}

impl Operational {
    pub(crate) fn new(repeat: Duration) -> Operational {
        let (queue, pending) = mpsc::channel(QUEUE);
        Operational {
            repeat,
            tracks: Mutex::new(HashMap::new()),
            queue,
            pending: tokio::sync::Mutex::new(pending),
            unsent: Mutex::new(None),
            degraded: AtomicUsize::new(0),
        }
    }

    /// Its circuit opened.
    pub(crate) fn circuit_opened(
        &self,
        integration: &str,
        failures: u32,
        last_error: Option<&str>,
    ) {
        self.found(
            integration,
            State::Error,
            format!("circuit open after {failures} failed attempts in a row; deliveries wait in its lane"),
            last_error,
        );
    }

    /// One of its deliveries was dead-lettered. Nothing changes while its
    /// circuit is open (the error says more), nor for an operational
    /// event's delivery (no loops).
    pub(crate) fn dead_lettered(
        &self,
        integration: &str,
        kind: &str,
        circuit_open: bool,
        reason: &str,
        detail: &str,
    ) {
        if kind == KIND || circuit_open {
            return;
        }
        self.found(
            integration,
            State::Warning,
            format!("a delivery was dead-lettered ({reason})"),
            Some(detail),
        );
    }

    /// It delivered.
    pub(crate) fn delivered(&self, integration: &str) {
        // The common case, without a lock: every integration active.
        if self.degraded.load(Ordering::Acquire) == 0 {
            return;
        }
        {
            let tracks = self.tracks.lock().unwrap_or_else(|p| p.into_inner());
            if tracks
                .get(integration)
                .is_none_or(|t| t.state == State::Active)
            {
                return;
            }
        }
        self.found(
            integration,
            State::Active,
            "delivering again".to_owned(),
            None,
        );
    }

    /// Where `integration` stands now.
    pub fn standing(&self, integration: &str) -> Standing {
        let tracks = self.tracks.lock().unwrap_or_else(|p| p.into_inner());
        match tracks.get(integration) {
            Some(t) => Standing {
                state: t.state,
                since: Some(t.since),
                reason: Some(t.reason.clone()).filter(|r| !r.is_empty()),
            },
            None => Standing {
                state: State::Active,
                since: None,
                reason: None,
            },
        }
    }

    fn found(&self, integration: &str, to: State, reason: String, last_error: Option<&str>) {
        let now = Instant::now();
        let wall = OffsetDateTime::now_utc();
        let raise = {
            let mut tracks = self.tracks.lock().unwrap_or_else(|p| p.into_inner());
            let track = tracks.entry(integration.to_owned()).or_insert(Track {
                state: State::Active,
                since: wall,
                raised: None,
                reason: String::new(),
            });
            let (raise, next) = transition(track.state, track.raised, to, now, self.repeat);
            if next != track.state {
                // Counted under the lock, with the state it follows.
                match (track.state, next) {
                    (State::Active, _) => self.degraded.fetch_add(1, Ordering::AcqRel),
                    (_, State::Active) => self.degraded.fetch_sub(1, Ordering::AcqRel),
                    _ => 0,
                };
                track.state = next;
                track.since = wall;
                track.reason.clone_from(&reason);
            }
            if raise {
                track.raised = Some(now);
            }
            raise.then_some(track.since)
        };
        let Some(since) = raise else { return };
        let event = event(integration, to, &reason, since, last_error);
        tracing::info!(integration, state = to.as_str(), %reason, "integration state changed; raising an operational event");
        if self.queue.try_send(event).is_err() {
            tracing::error!(
                integration,
                state = to.as_str(),
                "too many operational events waiting; this one is dropped"
            );
        }
    }

    /// Publishes what is raised, confirmed, through `session`, until `halt`.
    /// One that does not go out is tried again (pauses doubling up to
    /// [`PAUSE_MAX`]) and, when the session ends first, kept for the next.
    pub(crate) async fn publish<S: Session>(&self, session: &S, halt: CancellationToken) {
        let mut pending = tokio::select! {
            p = self.pending.lock() => p,
            _ = halt.cancelled() => return,
        };
        loop {
            let kept = self.unsent.lock().unwrap_or_else(|p| p.into_inner()).take();
            let event = match kept {
                Some(e) => e,
                None => tokio::select! {
                    e = pending.recv() => match e { Some(e) => e, None => return },
                    _ = halt.cancelled() => return,
                },
            };
            let body = event.to_json();
            let msg = Outgoing {
                body: &body,
                kind: EVENT_SCHEMA,
                message_id: &event.id,
            };
            let to = alertpost_seam::topology::event_destination(&event);
            let mut pause = PAUSE;
            loop {
                let sent = tokio::select! {
                    r = alertpost_seam::publish_bounded(session, &to, &msg) => r,
                    _ = halt.cancelled() => {
                        *self.unsent.lock().unwrap_or_else(|p| p.into_inner()) = Some(event);
                        return;
                    }
                };
                match sent {
                    Ok(()) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "operational event not confirmed; trying again")
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = halt.cancelled() => {
                        *self.unsent.lock().unwrap_or_else(|p| p.into_inner()) = Some(event);
                        return;
                    }
                }
                pause = (pause * 2).min(PAUSE_MAX);
            }
        }
    }
}

/// The event of `integration` entering `state`.
fn event(
    integration: &str,
    state: State,
    reason: &str,
    since: OffsetDateTime,
    last_error: Option<&str>,
) -> Event {
    let (status, severity, title) = match state {
        State::Error => (
            Status::Firing,
            Severity::High,
            format!("alertpost: integration {integration} is failing"),
        ),
        State::Warning => (
            Status::Firing,
            Severity::Warning,
            format!("alertpost: integration {integration} dead-lettered a delivery"),
        ),
        State::Active => (
            Status::Resolved,
            Severity::Info,
            format!("alertpost: integration {integration} delivers again"),
        ),
    };
    let mut e = Event::new(SOURCE, status, title);
    e.kind = KIND.to_owned();
    e.dedup_key = Some(format!("alertpost.integration.{integration}"));
    e.severity = Some(severity);
    e.message = Some(reason.to_owned());
    e.labels
        .insert("integration".into(), integration.to_owned());
    let since = since
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    for (key, value) in [
        ("integration", json!(integration)),
        ("state", json!(state.as_str())),
        ("reason", json!(reason)),
        ("since", json!(since)),
        ("last_error", json!(last_error)),
    ] {
        e.data.insert(key.to_owned(), value);
    }
    // Prepared here (id, time, checks): built from known-good parts.
    if let Err(err) = e.prepare(OffsetDateTime::now_utc()) {
        tracing::error!(error = %err, "an operational event does not validate");
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_decision_table() {
        let hour = Duration::from_secs(3600);
        let now = Instant::now();
        let recent = Some(now);
        let long_ago = now.checked_sub(Duration::from_secs(7200));
        use State::*;
        // (current, raised, found) → (raised?, afterwards)
        let rows = [
            (Active, None, Active, false, Active),
            (Active, None, Warning, true, Warning),
            (Active, None, Error, true, Error),
            (Warning, recent, Warning, false, Warning),
            (Warning, long_ago, Warning, true, Warning),
            (Warning, recent, Error, true, Error),
            (Warning, recent, Active, true, Active),
            // Only reached with the circuit closed again (a probe that
            // met a 4xx closes it without a delivery).
            (Error, recent, Warning, true, Warning),
            (Error, recent, Error, false, Error),
            (Error, long_ago, Error, true, Error),
            (Error, recent, Active, true, Active),
            (Active, recent, Active, false, Active),
        ];
        for (current, raised, found, expected, after) in rows {
            assert_eq!(
                transition(current, raised, found, now, hour),
                (expected, after),
                "{current:?} → {found:?}"
            );
        }
    }

    #[test]
    fn what_happens_to_operational_events_raises_nothing() {
        let ops = Operational::new(Duration::from_secs(3600));
        let raised = |ops: &Operational| {
            let mut pending = ops.pending.try_lock().expect("not taken");
            let mut n = 0;
            while pending.try_recv().is_ok() {
                n += 1;
            }
            n
        };
        ops.dead_lettered("ops", KIND, false, "status", "410 Gone");
        assert_eq!(
            raised(&ops),
            0,
            "a dead operational event raises no warning"
        );
        ops.dead_lettered("hook", "alert", true, "expired", "waited");
        assert_eq!(
            raised(&ops),
            0,
            "nor a dead letter while the circuit is open"
        );
        ops.dead_lettered("hook", "alert", false, "status", "410 Gone");
        ops.dead_lettered("hook", "alert", false, "status", "410 Gone");
        assert_eq!(raised(&ops), 1, "one warning, not one per dead letter");
        ops.delivered("hook");
        ops.delivered("hook");
        assert_eq!(raised(&ops), 1, "active once");
        ops.delivered("never-failed");
        assert_eq!(raised(&ops), 0, "a first success is no news");
        assert_eq!(
            ops.degraded.load(Ordering::Acquire),
            0,
            "every integration active again"
        );
        ops.circuit_opened("hook", 10, Some("503"));
        assert_eq!(ops.degraded.load(Ordering::Acquire), 1);
        assert_eq!(raised(&ops), 1);
        ops.delivered("hook");
        assert_eq!((raised(&ops), ops.degraded.load(Ordering::Acquire)), (1, 0));
    }

    #[test]
    fn events_carry_the_documented_fields() {
        let since = OffsetDateTime::now_utc();
        let e = event("oncall", State::Error, "circuit open", since, Some("503"));
        assert_eq!((e.source.as_str(), e.kind.as_str()), (SOURCE, KIND));
        assert_eq!(e.status, Status::Firing);
        assert_eq!(e.dedup_key.as_deref(), Some("alertpost.integration.oncall"));
        assert_eq!(e.data["state"], "error");
        assert_eq!(e.data["integration"], "oncall");
        assert_eq!(e.data["last_error"], "503");
        assert!(!e.id.is_empty() && e.received_at.is_some(), "prepared");
        let back = event("oncall", State::Active, "delivering again", since, None);
        assert_eq!(back.status, Status::Resolved);
        assert_eq!(back.dedup_key, e.dedup_key);
        assert!(back.data["last_error"].is_null());
    }
}
