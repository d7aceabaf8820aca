//! alertpost's configuration: one TOML file → a validated [`Config`].
//!
//! Layout:
//! - `raw`: the file as written (every value with its span);
//! - `validate`: the file checked whole, section by section, every
//!   problem collected;
//! - [`filter`]: `match`, the matchers that pick an integration's events;
//! - [`integration`]: the validated integration and its parts (auth,
//!   signing key, response validators), and its request body;
//! - [`policy`]: the outbound policy (https, allowed networks);
//! - [`tls`]: an integration's TLS files, read and checked;
//! - [`problem`]: what went wrong, with the integration, field, line, column;
//! - [`secret`]: values that must never be shown, and the one reading of
//!   an `Authorization` header ([`Credentials`]);
//! - `expand`: `${VAR}` expansion.
//!
//! [`parse`] reports every problem it finds, not only the first, so
//! `alertpost check` can list them all. Nothing here does network I/O.

mod expand;
pub mod filter;
pub mod integration;
pub mod policy;
pub mod problem;
mod raw;
pub mod secret;
pub mod tls;
mod validate;

use std::path::Path;
use std::time::Duration;

pub use filter::{Filter, Matcher};
pub use integration::{
    Auth, CircuitPolicy, Header, Integration, Kinds, Method, OAuth2, Order, Proxy, RateLimit,
    RetryPolicy, SigningKey, Validator, mask, url_origin,
};
pub use policy::Policy;
pub use problem::{ConfigError, Problem};
pub use secret::{Credentials, Secret};
pub use tls::{Tls, TlsVersion};
pub use validate::looks_secret;

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub policy: Policy,
    pub worker: WorkerSettings,
    pub store: StoreSettings,
    pub admin: AdminSettings,
    pub ingest: IngestSettings,
    pub operational: OperationalSettings,
    /// The delay queues retries wait in (`delay_tiers`), ascending.
    pub delay_tiers: Vec<Duration>,
    /// Every integration, enabled or not, in file order.
    pub integrations: Vec<Integration>,
}

/// How one worker process runs (the `[worker]` table).
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerSettings {
    /// Deliveries in flight at once in this worker, over all integrations;
    /// also the prefetch of each consumer.
    pub max_inflight: usize,
    /// On SIGTERM, how long in-flight deliveries may take to finish.
    pub drain_timeout: Duration,
}

/// The admin API (`[admin]`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AdminSettings {
    /// When set, every `/v1/` route needs `Authorization: Bearer <token>`;
    /// `/metrics`, `/healthz` and `/readyz` stay open.
    pub token: Option<Secret>,
}

/// The HTTP ingest (`[ingest]`): `alertpost ingest --config`, `alertpost run`.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestSettings {
    /// When any: `POST /v1/events` and `/v1/ingest/<format>` need one of
    /// them, as `Authorization: Bearer <token>` or as the password of HTTP
    /// Basic (some sources can only send Basic).
    pub tokens: Vec<Secret>,
    /// Requests handled at once; beyond, `503` at once (bodies are up to
    /// 4 MiB each: this bounds the memory they take).
    pub max_concurrent: usize,
}

impl Default for IngestSettings {
    fn default() -> IngestSettings {
        IngestSettings {
            tokens: Vec::new(),
            max_concurrent: 64,
        }
    }
}

/// The shortest admin or ingest token accepted: a guessable one protects nothing.
pub const TOKEN_MIN: usize = 16;

/// The worker's store (`[store]`).
#[derive(Debug, Clone, PartialEq)]
pub struct StoreSettings {
    /// Records older than this are pruned.
    pub retention: Duration,
    /// Attempt records and dead letters beyond this many bytes in all are
    /// pruned, oldest first.
    pub max_size: u64,
}

impl Default for StoreSettings {
    fn default() -> StoreSettings {
        StoreSettings {
            retention: Duration::from_secs(7 * 24 * 3600),
            max_size: 256 * 1024 * 1024,
        }
    }
}

/// The operational events a worker raises about its integrations
/// (`[operational]`).
#[derive(Debug, Clone, PartialEq)]
pub struct OperationalSettings {
    /// An unchanged state is raised again at most this often.
    pub repeat_interval: Duration,
}

impl Default for OperationalSettings {
    fn default() -> OperationalSettings {
        OperationalSettings {
            repeat_interval: Duration::from_secs(3600),
        }
    }
}

impl Default for WorkerSettings {
    fn default() -> WorkerSettings {
        WorkerSettings {
            max_inflight: 256,
            drain_timeout: Duration::from_secs(30),
        }
    }
}

impl Config {
    pub fn integration(&self, id: &str) -> Option<&Integration> {
        self.integrations.iter().find(|i| i.id == id)
    }

    /// The integrations that receive deliveries.
    pub fn enabled(&self) -> impl Iterator<Item = &Integration> {
        self.integrations.iter().filter(|i| i.enabled)
    }
}

/// Reads and validates the file at `path`, taking `${VAR}` values from the
/// process environment.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::single(Problem::file(&file, format!("cannot read the file: {e}")))
    })?;
    parse(&text, &file, &|name| std::env::var(name).ok())
}

/// Validates `text`; `file` names it in errors (a path), `env` answers
/// `${VAR}` lookups.
pub fn parse(
    text: &str,
    file: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    validate::config(text, file, env)
}
