//! A circuit breaker per integration: after `failures` attempts in a row
//! fail in a way worth retrying (5xx, timeouts, connection errors, 429...),
//! the circuit opens for `cooldown`. While open, deliveries to the
//! integration go to its lane and wait there without a request, so a dead
//! endpoint costs the others nothing. When the cooldown ends, one attempt
//! probes: success closes the circuit, failure opens it again. A probe that
//! never reports (its task cancelled at a drain deadline) is taken as lost
//! once it is overdue, and another probe goes out.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use alertpost_config::CircuitPolicy;

#[derive(Debug)]
pub struct Circuit {
    policy: CircuitPolicy,
    /// The longest an attempt can take; a probe out longer is lost.
    attempt_bound: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// The cooldown is over and one probe is out since `since`.
    Probing {
        since: Instant,
    },
}

/// What reporting an attempt did to the circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reported {
    /// Open afterwards.
    pub open: bool,
    /// Opened by this attempt (closed, or probing, before).
    pub opened: bool,
}

/// Whether an attempt may go out now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    Pass,
    /// The cooldown is over and this attempt is the probe: it must go out,
    /// or be given back ([`Circuit::unprobe`]).
    Probe,
    /// Open: come back after this long.
    Open(Duration),
}

impl Circuit {
    /// `attempt_bound`: the longest one attempt can take, after which a
    /// probe that has not reported is taken as lost.
    pub fn new(policy: CircuitPolicy, attempt_bound: Duration) -> Circuit {
        Circuit {
            policy,
            attempt_bound,
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock still holds a valid state.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn gate(&self) -> Gate {
        if self.policy.failures == 0 {
            return Gate::Pass;
        }
        let mut state = self.state();
        match *state {
            State::Closed { .. } => Gate::Pass,
            State::Open { until } => {
                let now = Instant::now();
                if now >= until {
                    *state = State::Probing { since: now };
                    Gate::Probe
                } else {
                    Gate::Open(until - now)
                }
            }
            State::Probing { since } => {
                let now = Instant::now();
                if now.saturating_duration_since(since) > self.attempt_bound {
                    tracing::warn!("circuit probe never reported; probing again");
                    *state = State::Probing { since: now };
                    Gate::Probe
                } else {
                    // One probe at a time; the others wait a little.
                    Gate::Open(self.policy.cooldown.min(Duration::from_secs(1)))
                }
            }
        }
    }

    /// Reports an attempt: `failed` when it failed in a way worth retrying.
    /// Says whether the circuit is open afterwards, and whether this
    /// attempt opened it.
    pub fn report(&self, failed: bool) -> Reported {
        if self.policy.failures == 0 {
            return Reported {
                open: false,
                opened: false,
            };
        }
        let mut state = self.state();
        let next = match (*state, failed) {
            (_, false) => State::Closed { failures: 0 },
            (State::Closed { failures }, true) if failures + 1 < self.policy.failures => {
                State::Closed {
                    failures: failures + 1,
                }
            }
            (State::Open { until }, true) => State::Open { until },
            (_, true) => State::Open {
                until: Instant::now()
                    .checked_add(self.policy.cooldown)
                    .unwrap_or_else(far_future),
            },
        };
        let opened = matches!(next, State::Open { .. }) && !matches!(*state, State::Open { .. });
        if opened {
            tracing::warn!(
                cooldown_s = self.policy.cooldown.as_secs(),
                "circuit opened: deliveries wait in the integration's lane without a request"
            );
        }
        if matches!(next, State::Closed { .. }) && !matches!(*state, State::Closed { .. }) {
            tracing::info!("circuit closed");
        }
        *state = next;
        Reported {
            open: matches!(next, State::Open { .. }),
            opened,
        }
    }

    /// A probe that will not go out after all (a newer event of its
    /// alert came first): the next attempt probes instead, at once.
    pub fn unprobe(&self) {
        let mut state = self.state();
        if let State::Probing { .. } = *state {
            *state = State::Open {
                until: Instant::now(),
            };
        }
    }

    pub fn is_open(&self) -> bool {
        matches!(*self.state(), State::Open { .. } | State::Probing { .. })
    }

    /// Its state in a word, for operators: `closed`, `open`, `probing`
    /// (the cooldown is over and one attempt is out), or `off`.
    pub fn label(&self) -> &'static str {
        if self.policy.failures == 0 {
            return "off";
        }
        match *self.state() {
            State::Closed { .. } => "closed",
            State::Open { .. } => "open",
            State::Probing { .. } => "probing",
        }
    }
}

/// A year from now: "open until further notice" for a cooldown too large to
/// add to the clock.
fn far_future() -> Instant {
    let now = Instant::now();
    now.checked_add(Duration::from_secs(365 * 24 * 3600))
        .unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn circuit(failures: u32, cooldown_ms: u64) -> Circuit {
        Circuit::new(
            CircuitPolicy {
                failures,
                cooldown: Duration::from_millis(cooldown_ms),
            },
            Duration::from_secs(60),
        )
    }

    #[test]
    fn opens_after_failures_in_a_row_and_probes_after_cooldown() {
        let c = circuit(3, 50);
        assert!(!c.report(true).open);
        assert!(!c.report(false).open, "a success resets the count");
        assert!(!c.report(true).open);
        assert!(!c.report(true).open);
        let third = c.report(true);
        assert!(third.open && third.opened, "third in a row opens");
        assert!(matches!(c.gate(), Gate::Open(_)));
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(c.gate(), Gate::Probe, "the probe");
        assert!(matches!(c.gate(), Gate::Open(_)), "one probe at a time");
        c.unprobe();
        assert_eq!(
            c.gate(),
            Gate::Probe,
            "given back: the next one probes at once"
        );
        let again = c.report(true);
        assert!(again.open && again.opened, "a failed probe opens again");
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(c.gate(), Gate::Probe);
        assert!(!c.report(false).open, "a good probe closes");
        assert_eq!(c.gate(), Gate::Pass);
        assert!(!c.is_open());
    }

    #[test]
    fn a_probe_that_never_reports_is_replaced_once_overdue() {
        let c = Circuit::new(
            CircuitPolicy {
                failures: 1,
                cooldown: Duration::from_millis(10),
            },
            Duration::from_millis(50),
        );
        assert!(c.report(true).open);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(
            c.gate(),
            Gate::Probe,
            "the probe (its task is then dropped)"
        );
        assert!(matches!(c.gate(), Gate::Open(_)), "still within its bound");
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(c.gate(), Gate::Probe, "overdue: a new probe");
        assert!(!c.report(false).open, "which closes it");
        assert_eq!(c.gate(), Gate::Pass);
    }

    #[test]
    fn zero_failures_disables_it() {
        let c = circuit(0, 50);
        for _ in 0..100 {
            assert!(!c.report(true).open);
        }
        assert_eq!(c.gate(), Gate::Pass);
    }
}
