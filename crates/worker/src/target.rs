//! One integration as the worker delivers to it ([`Target`]): its
//! settings and request parts, and the state its deliveries share: its
//! concurrency permits, its rate limit's bucket, its circuit, its series,
//! when it last delivered and failed ([`Seen`]).

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use alertpost_config::{Integration, RateLimit};
use alertpost_deliver::Endpoint;
use alertpost_metrics::IntegrationMetrics;
use time::OffsetDateTime;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::circuit::Circuit;

/// One integration, ready to deliver to.
#[derive(Debug)]
pub struct Target {
    pub integration: Integration,
    /// The integration's request parts, parsed once.
    pub endpoint: Endpoint,
    /// `integration.concurrency` permits: attempts in flight to it at once,
    /// whether they come from events, delivery jobs or its lane. Tokio's
    /// semaphore is fair: while a lane's delivery waits for a permit, a
    /// new delivery cannot take one ahead of it, so the backlog keeps its
    /// order.
    pub permits: Arc<Semaphore>,
    /// Its series, resolved once.
    pub metrics: IntegrationMetrics,
    pub circuit: Arc<Circuit>,
    /// Its `rate_limit`, a token bucket; kept over a reload that leaves
    /// the limit as it was.
    pub bucket: Option<Arc<Bucket>>,
    /// Lane deliveries waiting for a token: while any do, a new delivery
    /// does not take one ahead of them (the bucket itself is not fair).
    pub bucket_waiters: Arc<std::sync::atomic::AtomicUsize>,
    /// Its last success and failure, kept over a reload that leaves its
    /// URL as it was.
    pub seen: Arc<Seen>,
    /// What to mask in what its receiver answers
    /// ([`Integration::secret_values`]).
    pub secrets: Vec<String>,
}

/// A token bucket of one integration (GCRA, from `governor`).
pub type Bucket = governor::DefaultDirectRateLimiter;

/// A bucket for `limit`: `count` requests per `per`, in bursts of up to
/// `count`.
fn bucket(limit: RateLimit) -> Option<Arc<Bucket>> {
    let burst = NonZeroU32::new(limit.count)?;
    let quota = governor::Quota::with_period(limit.per / limit.count)?.allow_burst(burst);
    Some(Arc::new(governor::RateLimiter::direct(quota)))
}

impl Target {
    /// `integration` made ready, with its series; `before`, its target in
    /// the runtime being replaced: its circuit, permits, bucket and record
    /// of successes carry over where the settings they depend on did not
    /// change (a reload neither closes an open circuit nor lets old and
    /// new messages each use the full bound).
    pub fn new(
        i: &Integration,
        before: Option<&Arc<Target>>,
        series: IntegrationMetrics,
        client: &alertpost_deliver::Client,
    ) -> Result<Target, alertpost_deliver::request::EndpointError> {
        let circuit = match before {
            Some(b)
                if b.integration.url == i.url
                    && b.integration.circuit == i.circuit
                    && b.integration.timeout == i.timeout =>
            {
                b.circuit.clone()
            }
            _ => {
                series.circuit_open.set(0);
                // An attempt is at most two token fetches and two
                // requests, each bounded by the timeout.
                Arc::new(Circuit::new(i.circuit, i.timeout.saturating_mul(4)))
            }
        };
        let permits = match before {
            Some(b) if b.integration.concurrency == i.concurrency => b.permits.clone(),
            _ => Arc::new(Semaphore::new(i.concurrency)),
        };
        let (bucket, bucket_waiters) = match before {
            Some(b) if b.integration.rate_limit == i.rate_limit => {
                (b.bucket.clone(), b.bucket_waiters.clone())
            }
            _ => (i.rate_limit.and_then(bucket), Arc::default()),
        };
        let seen = match before {
            Some(b) if b.integration.url == i.url => b.seen.clone(),
            _ => Arc::default(),
        };
        Ok(Target {
            metrics: series,
            seen,
            secrets: i.secret_values(),
            circuit,
            permits,
            bucket,
            bucket_waiters,
            endpoint: Endpoint::new(i, client)?,
            integration: i.clone(),
        })
    }

    /// A permit if one is free now, and no lane delivery waits for one.
    pub fn try_permit(&self) -> Option<OwnedSemaphorePermit> {
        self.permits.clone().try_acquire_owned().ok()
    }

    /// A permit, in turn. `None` only if the semaphore were closed, which
    /// it never is; sending without the bound then beats losing the delivery.
    pub async fn permit(&self) -> Option<OwnedSemaphorePermit> {
        self.permits.clone().acquire_owned().await.ok()
    }
}

/// When an integration last delivered and last failed. A success costs one
/// atomic store (every delivery passes here); a failure takes a lock.
#[derive(Debug, Default)]
pub struct Seen {
    /// Unix milliseconds; 0: never.
    success_ms: AtomicI64,
    failure: Mutex<Option<(OffsetDateTime, String)>>,
}

impl Seen {
    pub fn delivered(&self, at: OffsetDateTime) {
        let ms = i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX);
        self.success_ms.store(ms, Ordering::Relaxed);
    }

    pub fn failed(&self, at: OffsetDateTime, error: &str) {
        // What a receiver answered can be long; the start says enough.
        let error: String = error.chars().take(300).collect();
        *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some((at, error));
    }

    pub fn last_success(&self) -> Option<OffsetDateTime> {
        match self.success_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok(),
        }
    }

    pub fn last_failure(&self) -> Option<(OffsetDateTime, String)> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_keeps_the_last_of_each() {
        let seen = Seen::default();
        assert_eq!(seen.last_success(), None);
        assert_eq!(seen.last_failure(), None);
        let t = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        seen.delivered(t);
        seen.failed(t + time::Duration::seconds(1), &"x".repeat(1000));
        seen.delivered(t + time::Duration::seconds(2));
        assert_eq!(seen.last_success(), Some(t + time::Duration::seconds(2)));
        let (at, error) = seen.last_failure().unwrap();
        assert_eq!(at, t + time::Duration::seconds(1));
        assert_eq!(error.len(), 300, "long answers are cut");
    }
}
