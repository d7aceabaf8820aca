//! What a delivery's attempt comes to: the one pure decision of the
//! worker, apart from all I/O. The verdict (from `classify`) says what the
//! attempt meant; the integration's retry policy and the clock say what
//! follows.
//!
//! | verdict | policy | decision |
//! | --- | --- | --- |
//! | delivered | | delivered |
//! | dead (status, policy) | | dead, that reason |
//! | retry | attempts left, next try within `max_age` | retry at now + backoff (at least `Retry-After`) |
//! | retry | `max_attempts` reached | dead, `exhausted` |
//! | retry | next try after `max_age` | dead, `expired` |

use alertpost_config::RetryPolicy;
use alertpost_deliver::Verdict;
use alertpost_event::job::DeadReason;
use time::OffsetDateTime;

use crate::schedule::{self, Next};

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Delivered,
    /// Try again, not before `due`.
    Retry {
        due: OffsetDateTime,
    },
    Dead {
        reason: DeadReason,
        detail: String,
    },
}

/// What follows attempt number `attempt` (1 for the first) of a delivery
/// first attempted at `first`, made at `now`.
pub fn decide(
    verdict: &Verdict,
    policy: &RetryPolicy,
    attempt: u32,
    first: OffsetDateTime,
    now: OffsetDateTime,
) -> Decision {
    match verdict {
        Verdict::Delivered => Decision::Delivered,
        Verdict::Dead { reason, detail } => Decision::Dead {
            reason: *reason,
            detail: detail.clone(),
        },
        Verdict::Retry {
            reason,
            retry_after,
        } => match schedule::next(policy, attempt, first, now, *retry_after) {
            Next::RetryIn(delay) => Decision::Retry { due: now + delay },
            Next::Exhausted => Decision::Dead {
                reason: DeadReason::Exhausted,
                detail: format!("gave up after {attempt} attempts; last: {reason}"),
            },
            Next::Expired => Decision::Dead {
                reason: DeadReason::Expired,
                detail: format!(
                    "the next try would come more than {} after the first; last: {reason}",
                    humanize(policy.max_age)
                ),
            },
        },
    }
}

/// Whether a delivery that waited (in its lane, or for its circuit) has
/// passed its `max_age` before it could be tried again.
pub fn expired(policy: &RetryPolicy, first: OffsetDateTime, now: OffsetDateTime) -> bool {
    now > first + policy.max_age
}

fn humanize(d: std::time::Duration) -> String {
    humantime_like(d.as_secs())
}

/// `90s`, `2m`, `24h`: the largest exact unit up to hours.
fn humantime_like(secs: u64) -> String {
    for (unit, size) in [("h", 3600), ("m", 60)] {
        if secs >= size && secs.is_multiple_of(size) {
            return format!("{}{unit}", secs / size);
        }
    }
    format!("{secs}s")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-12-01 10:00 UTC);

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            initial: Duration::from_secs(5),
            max_interval: Duration::from_secs(60),
            multiplier: 2.0,
            max_age: Duration::from_secs(3600),
            jitter: 0.0,
        }
    }

    fn retry(after: Option<u64>) -> Verdict {
        Verdict::Retry {
            reason: "HTTP 503".into(),
            retry_after: after.map(Duration::from_secs),
        }
    }

    fn dead(reason: DeadReason, detail: &str) -> Decision {
        Decision::Dead {
            reason,
            detail: detail.into(),
        }
    }

    fn at(secs: u64) -> OffsetDateTime {
        T0 + Duration::from_secs(secs)
    }

    #[test]
    fn the_table() {
        let p = policy();
        let status = Verdict::Dead {
            reason: DeadReason::Status,
            detail: "HTTP 404".into(),
        };
        // (verdict, attempt, now) → decision; the first attempt at T0.
        let rows: Vec<(Verdict, u32, OffsetDateTime, Decision)> = vec![
            (Verdict::Delivered, 1, T0, Decision::Delivered),
            (Verdict::Delivered, 3, at(50), Decision::Delivered),
            (status.clone(), 1, T0, dead(DeadReason::Status, "HTTP 404")),
            (retry(None), 1, T0, Decision::Retry { due: at(5) }),
            (retry(None), 2, at(5), Decision::Retry { due: at(15) }),
            (retry(Some(30)), 1, T0, Decision::Retry { due: at(30) }),
            (retry(Some(1)), 1, T0, Decision::Retry { due: at(5) }),
            (
                retry(None),
                3,
                at(20),
                dead(
                    DeadReason::Exhausted,
                    "gave up after 3 attempts; last: HTTP 503",
                ),
            ),
            (
                retry(None),
                1,
                at(3598),
                dead(
                    DeadReason::Expired,
                    "the next try would come more than 1h after the first; last: HTTP 503",
                ),
            ),
            (
                retry(Some(7200)),
                1,
                T0,
                dead(
                    DeadReason::Expired,
                    "the next try would come more than 1h after the first; last: HTTP 503",
                ),
            ),
        ];
        for (verdict, attempt, now, expected) in rows {
            assert_eq!(
                decide(&verdict, &p, attempt, T0, now),
                expected,
                "{verdict:?} at attempt {attempt}, {now}"
            );
        }
    }

    #[test]
    fn a_wait_past_max_age_is_expired() {
        let p = policy();
        assert!(!expired(&p, T0, at(3600)));
        assert!(expired(&p, T0, at(3601)));
    }

    #[test]
    fn durations_read_as_their_largest_exact_unit() {
        assert_eq!(humantime_like(90), "90s");
        assert_eq!(humantime_like(120), "2m");
        assert_eq!(humantime_like(86_400), "24h");
        assert_eq!(humantime_like(3601), "3601s");
    }
}
