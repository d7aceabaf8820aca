//! Where each integration stands, for operators: `GET /v1/integrations`
//! and the console's overview. Counts are this worker's since it started.

use alertpost_config::{Integration, mask};
use alertpost_worker::{IntegrationState, View};
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

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
pub fn snapshot(view: &View) -> Vec<IntegrationStatus> {
    view.runtime()
        .config
        .integrations
        .iter()
        .map(|i| match view.integration(&i.id) {
            Some(state) => enabled(i, state),
            None => disabled(i),
        })
        .collect()
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

fn enabled(i: &Integration, state: IntegrationState) -> IntegrationStatus {
    let secrets = i.secret_values();
    let standing = state.standing;
    IntegrationStatus {
        id: i.id.clone(),
        name: i.name.clone(),
        url: alertpost_config::url_origin(&i.url),
        enabled: true,
        state: standing.state.as_str().to_owned(),
        since: standing.since.map(rfc3339),
        reason: standing.reason.map(|r| mask(&r, &secrets)),
        circuit: Some(state.circuit.to_owned()),
        delivered: state.delivered,
        retried: state.retried,
        deferred: state.deferred,
        dead: state.dead,
        in_flight: state.in_flight,
        last_success: state.last_success.map(rfc3339),
        last_failure: state.last_failure.as_ref().map(|(at, _)| rfc3339(*at)),
        last_error: state.last_failure.map(|(_, e)| mask(&e, &secrets)),
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
