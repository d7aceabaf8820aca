//! Where each integration stands, for operators: `GET /v1/integrations`
//! and the console's overview. Counts are this worker's since it started.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use alertpost_config::{Integration, mask};
use alertpost_metrics::Outcome;
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::runtime::{Ctx, Target};

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

    fn last_success(&self) -> Option<OffsetDateTime> {
        match self.success_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok(),
        }
    }

    fn last_failure(&self) -> Option<(OffsetDateTime, String)> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// One integration as operators see it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct IntegrationStatus {
    pub id: String,
    pub name: String,
    /// Scheme, host and port of its URL (paths carry tokens).
    pub url: String,
    pub enabled: bool,
    /// `active`, `warning` or `error` (the operational events' states),
    /// or `disabled`.
    pub state: String,
    /// Since when (RFC 3339); none: since the worker started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `closed`, `open`, `probing` or `off`; none when disabled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub circuit: Option<String>,
    pub delivered: u64,
    pub retried: u64,
    /// Handed to its lane (at its concurrency or rate limit, or its
    /// circuit open).
    pub deferred: u64,
    pub dead: u64,
    /// Attempts in flight now.
    pub in_flight: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_success: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<String>,
    /// The last failure's reason, its secrets masked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// Every integration of the configuration in force, in file order.
pub fn snapshot(ctx: &Ctx) -> Vec<IntegrationStatus> {
    let runtime = ctx.current.get();
    runtime
        .config
        .integrations
        .iter()
        .map(|i| match runtime.target(&i.id) {
            Some(target) => of_target(ctx, target),
            None => disabled(i),
        })
        .collect()
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

fn of_target(ctx: &Ctx, target: &Target) -> IntegrationStatus {
    let i = &target.integration;
    let status = ctx.operational.standing(&i.id);
    let m = &target.metrics;
    let failure = target.seen.last_failure();
    let secrets = i.secret_values();
    IntegrationStatus {
        id: i.id.clone(),
        name: i.name.clone(),
        url: alertpost_config::url_origin(&i.url),
        enabled: true,
        state: status.state.as_str().to_owned(),
        since: status.since.map(rfc3339),
        reason: status.reason.map(|r| mask(&r, &secrets)),
        circuit: Some(target.circuit.label().to_owned()),
        delivered: m.count(Outcome::Delivered),
        retried: m.count(Outcome::Retried),
        deferred: m.count(Outcome::Deferred),
        dead: m.count(Outcome::Dead),
        in_flight: m.inflight.get(),
        last_success: target.seen.last_success().map(rfc3339),
        last_failure: failure.as_ref().map(|(at, _)| rfc3339(*at)),
        last_error: failure.map(|(_, e)| mask(&e, &secrets)),
    }
}

fn disabled(i: &Integration) -> IntegrationStatus {
    IntegrationStatus {
        id: i.id.clone(),
        name: i.name.clone(),
        url: alertpost_config::url_origin(&i.url),
        enabled: false,
        state: "disabled".to_owned(),
        since: None,
        reason: None,
        circuit: None,
        delivered: 0,
        retried: 0,
        deferred: 0,
        dead: 0,
        in_flight: 0,
        last_success: None,
        last_failure: None,
        last_error: None,
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
