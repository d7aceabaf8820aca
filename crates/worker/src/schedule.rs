//! When a failed delivery is tried again. The only module that uses the
//! `backoff` crate (unmaintained, RUSTSEC-2025-0012, but sound; kept here so
//! replacing it touches one file).
//!
//! The n-th delay is the n-th value of an exponential backoff: `initial`,
//! then times `multiplier`, capped at `max_interval`, each randomized by
//! ± `jitter` so deliveries that failed together come back spread out. An
//! endpoint's `Retry-After` raises the delay to at least what it asked for.
//! Past `max_attempts`, or when the next try would come after `max_age`
//! (counted from the first attempt), the delivery is given up.

use std::time::Duration;

use alertpost_config::RetryPolicy;
use backoff::SystemClock;
use backoff::backoff::Backoff;
use backoff::exponential::ExponentialBackoffBuilder;
use time::OffsetDateTime;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Next {
    /// Try again after this long.
    RetryIn(Duration),
    /// `max_attempts` reached.
    Exhausted,
    /// The next try would come after `max_age`.
    Expired,
}

/// What follows attempt number `attempts` (1 for the first), made at `now`.
pub fn next(
    policy: &RetryPolicy,
    attempts: u32,
    first_attempt_at: OffsetDateTime,
    now: OffsetDateTime,
    retry_after: Option<Duration>,
) -> Next {
    if attempts >= policy.max_attempts {
        return Next::Exhausted;
    }
    let mut backoff = ExponentialBackoffBuilder::<SystemClock>::new()
        .with_initial_interval(policy.initial)
        .with_multiplier(policy.multiplier)
        .with_max_interval(policy.max_interval)
        .with_randomization_factor(policy.jitter)
        .with_max_elapsed_time(None)
        .build();
    let mut delay = policy.initial;
    for _ in 0..attempts.max(1) {
        // Without a max elapsed time, the backoff always has a next value.
        delay = backoff.next_backoff().unwrap_or(policy.max_interval);
    }
    if let Some(asked) = retry_after {
        delay = delay.max(asked);
    }
    if now + delay > first_attempt_at + policy.max_age {
        return Next::Expired;
    }
    Next::RetryIn(delay)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-11-25 10:00 UTC);

    fn policy(jitter: f64) -> RetryPolicy {
        RetryPolicy {
            max_attempts: 6,
            initial: Duration::from_secs(5),
            max_interval: Duration::from_secs(60),
            multiplier: 2.0,
            max_age: Duration::from_secs(3600),
            jitter,
        }
    }

    #[test]
    fn doubles_up_to_the_cap_without_jitter() {
        let p = policy(0.0);
        let delays: Vec<Next> = (1..=6).map(|n| next(&p, n, T0, T0, None)).collect();
        let s = |n| Next::RetryIn(Duration::from_secs(n));
        assert_eq!(delays, [s(5), s(10), s(20), s(40), s(60), Next::Exhausted]);
    }

    #[test]
    fn jitter_spreads_within_its_fraction() {
        let p = policy(0.2);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let Next::RetryIn(d) = next(&p, 2, T0, T0, None) else {
                panic!()
            };
            assert!(
                d >= Duration::from_secs(8) && d <= Duration::from_secs(12),
                "{d:?}"
            );
            seen.insert(d.as_millis());
        }
        assert!(seen.len() > 20, "jitter varies the delay");
    }

    #[test]
    fn retry_after_raises_the_delay_and_max_age_ends_it() {
        let p = policy(0.0);
        assert_eq!(
            next(&p, 1, T0, T0, Some(Duration::from_secs(30))),
            Next::RetryIn(Duration::from_secs(30))
        );
        assert_eq!(
            next(&p, 1, T0, T0, Some(Duration::from_secs(1))),
            Next::RetryIn(Duration::from_secs(5))
        );
        let late = T0 + Duration::from_secs(3596);
        assert_eq!(next(&p, 1, T0, late, None), Next::Expired);
        assert_eq!(
            next(&p, 1, T0, T0, Some(Duration::from_secs(7200))),
            Next::Expired
        );
    }
}
