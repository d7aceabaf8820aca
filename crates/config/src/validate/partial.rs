//! One `[[integration]]` or `[defaults]` table's own values, each checked
//! where it is written ([`Partial`]), and how an integration's merge with
//! `[defaults]` takes them field by field.

use std::ops::Range;
use std::time::Duration;

use url::Url;

use super::Cx;
use super::parts::BodySpec;
use super::values::parse_url;
use crate::filter::Filter;
use crate::integration::{
    Auth, Header, Kinds, Method, Order, Proxy, RateLimit, RetryPolicy, SigningKey, Validator,
};
use crate::raw::{RawCircuit, RawIntegration, RawRetry};
use crate::secret::Secret;
use crate::tls::Tls;

/// The longest an attempt may take: RabbitMQ cancels consumers that hold
/// messages too long.
const MAX_TIMEOUT: Duration = Duration::from_secs(300);

/// One section's own validated values, before merging.
#[derive(Default)]
pub(super) struct Partial {
    pub(super) name: Option<String>,
    pub(super) enabled: Option<bool>,
    pub(super) url: Option<(Url, Auth, Range<usize>)>,
    /// A url was written, valid or not (an invalid one is already reported).
    pub(super) url_written: bool,
    pub(super) method: Option<Method>,
    pub(super) headers: Option<Vec<Header>>,
    pub(super) timeout: Option<Duration>,
    pub(super) concurrency: Option<usize>,
    pub(super) filter: Option<Filter>,
    pub(super) body: Option<BodySpec>,
    pub(super) content_type: Option<String>,
    pub(super) auth: Option<Auth>,
    pub(super) auth_written: bool,
    pub(super) signing_key: Option<SigningKey>,
    pub(super) validate: Option<Vec<Validator>>,
    pub(super) routing_key: Option<Secret>,
    pub(super) retry: RetryPartial,
    pub(super) circuit: (Option<u32>, Option<Duration>),
    pub(super) rate_limit: Option<RateLimit>,
    pub(super) kinds: Option<Kinds>,
    pub(super) send_resolved: Option<bool>,
    pub(super) order: Option<Order>,
    pub(super) proxy: Option<Proxy>,
    /// With the span of the `tls` table, for problems found when merging.
    pub(super) tls: Option<(Tls, Range<usize>)>,
}

/// A `retry` table's own values; each field merges with `[defaults]` on its own.
#[derive(Default, Clone, Copy)]
pub(super) struct RetryPartial {
    pub(super) max_attempts: Option<u32>,
    pub(super) initial: Option<Duration>,
    pub(super) max_interval: Option<Duration>,
    pub(super) multiplier: Option<f64>,
    pub(super) max_age: Option<Duration>,
    pub(super) jitter: Option<f64>,
}

impl Cx<'_> {
    /// Validates the values one section sets itself.
    pub(super) fn partial(&mut self, raw: &RawIntegration, section: &str) -> Partial {
        let mut p = Partial {
            name: raw.name.as_ref().map(|n| n.get_ref().clone()),
            enabled: raw.enabled.as_ref().map(|e| *e.get_ref()),
            url_written: raw.url.is_some(),
            ..Partial::default()
        };
        if let Some(raw_url) = &raw.url
            && let Some((text, _)) = self.expand(raw_url, section, "url")
        {
            match parse_url(&text) {
                Ok((url, auth)) => p.url = Some((url, auth, raw_url.span())),
                Err(message) => self.problem(raw_url.span(), section, Some("url"), &message),
            }
        }
        if let Some(m) = &raw.method {
            match m.get_ref().to_ascii_uppercase().as_str() {
                "POST" => p.method = Some(Method::Post),
                "PUT" => p.method = Some(Method::Put),
                "PATCH" => p.method = Some(Method::Patch),
                other => self.problem(
                    m.span(),
                    section,
                    Some("method"),
                    &format!("`{other}` is not supported; use POST, PUT or PATCH"),
                ),
            }
        }
        if let Some(headers) = &raw.headers {
            let mut out = Vec::new();
            for (name, value) in headers.get_ref() {
                if let Some(h) = self.header(name, value, section, "headers", false) {
                    out.push(h);
                }
            }
            p.headers = Some(out);
        }
        if let Some(t) = &raw.timeout
            && let Some(d) = self.duration(t, section, "timeout")
        {
            if d > MAX_TIMEOUT {
                self.problem(
                    t.span(),
                    section,
                    Some("timeout"),
                    "must be at most 5m (RabbitMQ cancels consumers that hold messages too long)",
                );
            } else {
                p.timeout = Some(d);
            }
        }
        if let Some(c) = &raw.concurrency {
            match usize::try_from(*c.get_ref()) {
                Ok(v @ 1..=1024) => p.concurrency = Some(v),
                _ => self.problem(
                    c.span(),
                    section,
                    Some("concurrency"),
                    "must be between 1 and 1024",
                ),
            }
        }
        if let Some(m) = &raw.matchers {
            p.filter = self.matchers(m, section);
        }
        p.body = self.body_spec(raw.format.as_ref(), raw.template.as_ref(), section);
        if let Some(ct) = &raw.content_type {
            p.content_type = self.content_type(ct, section);
        }
        if let Some(a) = &raw.auth {
            p.auth_written = true;
            p.auth = self.auth(a, section);
        }
        if let Some(s) = &raw.secret {
            p.signing_key = self.signing_key(s, section);
        }
        if let Some(v) = &raw.validate {
            p.validate = self.validators(v, section);
        }
        if let Some(k) = &raw.routing_key {
            p.routing_key = self.routing_key(k, section);
        }
        if let Some(r) = &raw.retry {
            p.retry = self.retry(r.get_ref(), section);
        }
        if let Some(r) = &raw.rate_limit {
            p.rate_limit = self.rate_limit(r, section);
        }
        if let Some(k) = &raw.kinds {
            p.kinds = self.kinds(k, section);
        }
        p.send_resolved = raw.send_resolved.as_ref().map(|b| *b.get_ref());
        if let Some(o) = &raw.order {
            p.order = self.order(o, section);
        }
        if let Some(x) = &raw.proxy {
            p.proxy = self.proxy(x, section);
        }
        if let Some(t) = &raw.tls {
            p.tls = self.tls(t, section).map(|tls| (tls, t.span()));
        }
        if let Some(c) = &raw.circuit {
            p.circuit = self.circuit(c.get_ref(), section);
        }
        p
    }

    pub(super) fn circuit(
        &mut self,
        raw: &RawCircuit,
        section: &str,
    ) -> (Option<u32>, Option<Duration>) {
        let failures = raw
            .failures
            .as_ref()
            .and_then(|f| match u32::try_from(*f.get_ref()) {
                Ok(v @ 0..=10_000) => Some(v),
                _ => {
                    self.problem(
                        f.span(),
                        section,
                        Some("circuit.failures"),
                        "must be between 0 (off) and 10000",
                    );
                    None
                }
            });
        let cooldown = raw
            .cooldown
            .as_ref()
            .and_then(|c| self.duration(c, section, "circuit.cooldown"));
        (failures, cooldown)
    }

    pub(super) fn retry(&mut self, raw: &RawRetry, section: &str) -> RetryPartial {
        let mut r = RetryPartial::default();
        if let Some(n) = &raw.max_attempts {
            match u32::try_from(*n.get_ref()) {
                Ok(v @ 1..=1000) => r.max_attempts = Some(v),
                _ => self.problem(
                    n.span(),
                    section,
                    Some("retry.max_attempts"),
                    "must be between 1 and 1000",
                ),
            }
        }
        for (value, field, slot) in [
            (&raw.initial, "retry.initial", &mut r.initial),
            (&raw.max_interval, "retry.max_interval", &mut r.max_interval),
            (&raw.max_age, "retry.max_age", &mut r.max_age),
        ] {
            if let Some(v) = value {
                *slot = self.duration(v, section, field);
            }
        }
        if let Some(m) = &raw.multiplier {
            let v = *m.get_ref();
            if (1.0..=10.0).contains(&v) {
                r.multiplier = Some(v);
            } else {
                self.problem(
                    m.span(),
                    section,
                    Some("retry.multiplier"),
                    "must be between 1.0 and 10.0",
                );
            }
        }
        if let Some(j) = &raw.jitter {
            let v = *j.get_ref();
            if (0.0..=1.0).contains(&v) {
                r.jitter = Some(v);
            } else {
                self.problem(
                    j.span(),
                    section,
                    Some("retry.jitter"),
                    "must be between 0.0 and 1.0",
                );
            }
        }
        r
    }
}

/// An integration's `retry`, field by field over `[defaults]`, over the
/// built-in defaults.
pub(super) fn merge_retry(own: RetryPartial, defaults: RetryPartial) -> RetryPolicy {
    let d = RetryPolicy::default();
    let mut r = RetryPolicy {
        max_attempts: own
            .max_attempts
            .or(defaults.max_attempts)
            .unwrap_or(d.max_attempts),
        initial: own.initial.or(defaults.initial).unwrap_or(d.initial),
        max_interval: own
            .max_interval
            .or(defaults.max_interval)
            .unwrap_or(d.max_interval),
        multiplier: own
            .multiplier
            .or(defaults.multiplier)
            .unwrap_or(d.multiplier),
        max_age: own.max_age.or(defaults.max_age).unwrap_or(d.max_age),
        jitter: own.jitter.or(defaults.jitter).unwrap_or(d.jitter),
    };
    // A cap below the first delay would make the first delay the cap.
    r.max_interval = r.max_interval.max(r.initial);
    r
}

/// `[defaults]` headers, with the integration's own added or overriding.
pub(super) fn merge_headers(defaults: Option<&[Header]>, own: Option<Vec<Header>>) -> Vec<Header> {
    let mut merged: Vec<Header> = defaults.map(<[Header]>::to_vec).unwrap_or_default();
    for header in own.unwrap_or_default() {
        merged.retain(|h| h.name != header.name);
        merged.push(header);
    }
    merged
}
