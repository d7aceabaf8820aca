//! The config file as written: every value keeps its span, so a problem
//! found later can still name its line. Unknown keys are refused here, so a
//! typo never silently drops a setting.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFile {
    pub policy: Option<Spanned<RawPolicy>>,
    pub defaults: Option<Spanned<RawIntegration>>,
    pub worker: Option<Spanned<RawWorker>>,
    pub store: Option<Spanned<RawStore>>,
    pub admin: Option<Spanned<RawAdmin>>,
    pub ingest: Option<Spanned<RawIngest>>,
    pub operational: Option<Spanned<RawOperational>>,
    pub delay_tiers: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub integration: Vec<Spanned<RawIntegration>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOperational {
    pub repeat_interval: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawIngest {
    pub tokens: Option<Vec<Spanned<String>>>,
    pub max_concurrent: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAdmin {
    pub token: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStore {
    pub retention: Option<Spanned<String>>,
    pub max_size: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRetry {
    pub max_attempts: Option<Spanned<i64>>,
    pub initial: Option<Spanned<String>>,
    pub max_interval: Option<Spanned<String>>,
    pub multiplier: Option<Spanned<f64>>,
    pub max_age: Option<Spanned<String>>,
    pub jitter: Option<Spanned<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPolicy {
    pub require_https: Option<Spanned<bool>>,
    pub allow_networks: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWorker {
    pub max_inflight: Option<Spanned<i64>>,
    pub drain_timeout: Option<Spanned<String>>,
}

/// One `[[integration]]`, or `[defaults]` (same keys; `id` not allowed there).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawIntegration {
    pub id: Option<Spanned<String>>,
    pub name: Option<Spanned<String>>,
    pub enabled: Option<Spanned<bool>>,
    pub url: Option<Spanned<String>>,
    pub method: Option<Spanned<String>>,
    pub headers: Option<Spanned<BTreeMap<Spanned<String>, Spanned<String>>>>,
    pub timeout: Option<Spanned<String>>,
    pub concurrency: Option<Spanned<i64>>,
    #[serde(rename = "match")]
    pub matchers: Option<Spanned<Vec<Spanned<String>>>>,
    pub format: Option<Spanned<String>>,
    pub template: Option<Spanned<String>>,
    pub content_type: Option<Spanned<String>>,
    pub auth: Option<Spanned<RawAuth>>,
    pub secret: Option<Spanned<String>>,
    pub validate: Option<Spanned<Vec<Spanned<RawValidator>>>>,
    pub routing_key: Option<Spanned<String>>,
    pub retry: Option<Spanned<RawRetry>>,
    pub circuit: Option<Spanned<RawCircuit>>,
    pub rate_limit: Option<Spanned<String>>,
    pub kinds: Option<Spanned<Vec<Spanned<String>>>>,
    pub send_resolved: Option<Spanned<bool>>,
    pub order: Option<Spanned<String>>,
    pub proxy: Option<Spanned<String>>,
    pub tls: Option<Spanned<RawTls>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTls {
    pub ca_file: Option<Spanned<String>>,
    pub cert_file: Option<Spanned<String>>,
    pub key_file: Option<Spanned<String>>,
    pub server_name: Option<Spanned<String>>,
    pub min_version: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCircuit {
    pub failures: Option<Spanned<i64>>,
    pub cooldown: Option<Spanned<String>>,
}

/// `auth = { type = "...", ... }`; which keys a type takes is checked later,
/// so a misplaced one is named with its type.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAuth {
    #[serde(rename = "type")]
    pub kind: Spanned<String>,
    pub username: Option<Spanned<String>>,
    pub password: Option<Spanned<String>>,
    pub token: Option<Spanned<String>>,
    pub client_id: Option<Spanned<String>>,
    pub client_secret: Option<Spanned<String>>,
    pub token_url: Option<Spanned<String>>,
    pub scopes: Option<Vec<Spanned<String>>>,
    pub headers: Option<Spanned<BTreeMap<Spanned<String>, Spanned<String>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawValidator {
    pub path: Spanned<String>,
    pub expected: Spanned<Vec<Spanned<toml::Value>>>,
}
