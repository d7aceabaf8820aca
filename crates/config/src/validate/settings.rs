//! The top-level tables: `[policy]`, `[worker]`, `[store]`, `[admin]`,
//! `[ingest]`, and `delay_tiers`.

use std::time::Duration;

use alertpost_seam::topology::{TIER_RULE, tier_fits};
use toml::Spanned;

use super::Cx;
use crate::policy::Policy;
use crate::raw::{RawAdmin, RawIngest, RawPolicy, RawStore, RawWorker};
use crate::secret::Secret;
use crate::{AdminSettings, IngestSettings, StoreSettings, TOKEN_MIN, WorkerSettings};

impl Cx<'_> {
    pub(super) fn policy(&mut self, raw: Spanned<RawPolicy>) -> Policy {
        let raw = raw.into_inner();
        let mut policy = Policy {
            require_https: raw.require_https.map(Spanned::into_inner).unwrap_or(false),
            allow_networks: Vec::new(),
        };
        for net in raw.allow_networks.unwrap_or_default() {
            let parsed = net.get_ref().parse::<ipnet::IpNet>().or_else(|_| {
                net.get_ref()
                    .parse::<std::net::IpAddr>()
                    .map(ipnet::IpNet::from)
            });
            match parsed {
                Ok(n) => policy.allow_networks.push(n.trunc()),
                Err(_) => self.problem(
                    net.span(),
                    "[policy]",
                    Some("allow_networks"),
                    &format!(
                        "`{}` is not a network (e.g. 10.0.0.0/8 or 127.0.0.1)",
                        net.get_ref()
                    ),
                ),
            }
        }
        policy
    }

    pub(super) fn worker(&mut self, raw: Spanned<RawWorker>) -> WorkerSettings {
        let raw = raw.into_inner();
        let mut worker = WorkerSettings::default();
        if let Some(n) = raw.max_inflight {
            match usize::try_from(*n.get_ref()) {
                Ok(v @ 1..=10_000) => worker.max_inflight = v,
                _ => self.problem(
                    n.span(),
                    "[worker]",
                    Some("max_inflight"),
                    "must be between 1 and 10000",
                ),
            }
        }
        if let Some(d) = raw.drain_timeout
            && let Some(v) = self.duration(&d, "[worker]", "drain_timeout")
        {
            worker.drain_timeout = v;
        }
        worker
    }

    pub(super) fn store(&mut self, raw: Spanned<RawStore>) -> StoreSettings {
        let raw = raw.into_inner();
        let mut store = StoreSettings::default();
        if let Some(d) = &raw.retention
            && let Some(v) = self.duration(d, "[store]", "retention")
        {
            store.retention = v;
        }
        if let Some(size) = &raw.max_size {
            match parse_size(size.get_ref()) {
                Some(v) if v >= 1024 * 1024 => store.max_size = v,
                _ => self.problem(
                    size.span(),
                    "[store]",
                    Some("max_size"),
                    "not a size of 1MiB or more (e.g. \"256MiB\", \"2GiB\")",
                ),
            }
        }
        store
    }

    pub(super) fn admin(&mut self, raw: Spanned<RawAdmin>) -> AdminSettings {
        AdminSettings {
            token: raw
                .into_inner()
                .token
                .as_ref()
                .and_then(|t| self.token(t, "[admin]", "token")),
        }
    }

    pub(super) fn ingest(&mut self, raw: Spanned<RawIngest>) -> IngestSettings {
        let raw = raw.into_inner();
        let mut ingest = IngestSettings::default();
        for t in raw.tokens.iter().flatten() {
            if let Some(token) = self.token(t, "[ingest]", "tokens") {
                ingest.tokens.push(token);
            }
        }
        if let Some(n) = raw.max_concurrent {
            match usize::try_from(*n.get_ref()) {
                Ok(v @ 1..=10_000) => ingest.max_concurrent = v,
                _ => self.problem(
                    n.span(),
                    "[ingest]",
                    Some("max_concurrent"),
                    "must be between 1 and 10000",
                ),
            }
        }
        ingest
    }

    /// A bearer token: `${VAR}`-expanded, long enough, one printable word.
    pub(super) fn token(
        &mut self,
        raw: &Spanned<String>,
        section: &str,
        field: &str,
    ) -> Option<Secret> {
        let (value, _) = self.expand(raw, section, field)?;
        let problem = if value.chars().count() < TOKEN_MIN {
            Some(format!("must be at least {TOKEN_MIN} characters"))
        } else if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            Some("must not hold spaces, newlines or other control characters".to_owned())
        } else {
            None
        };
        match problem {
            Some(p) => {
                self.problem(raw.span(), section, Some(field), &p);
                None
            }
            None => Some(Secret::new(value)),
        }
    }

    pub(super) fn delay_tiers(&mut self, raw: &Spanned<Vec<Spanned<String>>>) -> Vec<Duration> {
        let mut tiers = Vec::new();
        for t in raw.get_ref() {
            if let Some(d) = self.duration(t, "delay_tiers", "delay_tiers") {
                if !tier_fits(d) {
                    self.problem(
                        t.span(),
                        "delay_tiers",
                        None,
                        &format!("each tier is {TIER_RULE}"),
                    );
                } else {
                    tiers.push(d);
                }
            }
        }
        if raw.get_ref().is_empty() {
            self.problem(raw.span(), "delay_tiers", None, "list at least one tier");
        }
        tiers.sort();
        tiers.dedup();
        tiers
    }
}

/// `256MiB`, `2GiB`, `500MB`, `1048576`: a size in bytes.
pub(super) fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(digits);
    let n: u64 = n.parse().ok()?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "kib" => 1 << 10,
        "mb" => 1_000_000,
        "mib" => 1 << 20,
        "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(factor)
}
