//! Raw file → validated [`Config`], collecting every problem.
//!
//! Each section's own values are checked where they are written, so a bad
//! value in `[defaults]` is reported once, at its line, not once per
//! integration. Then each integration's values are merged over the
//! defaults and the built-in defaults, and checked as a whole.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use alertpost_seam::topology::{TIER_RULE, tier_fits};
use toml::Spanned;
use url::Url;

mod parts;

use parts::BodySpec;

use crate::expand::expand;
use crate::filter::Filter;
use crate::integration::{Auth, Header, Integration, Method, SigningKey, Validator};
use crate::integration::{CircuitPolicy, Kinds, Proxy, RateLimit, RetryPolicy, url_origin};
use crate::policy::{Policy, canonical};
use crate::problem::{ConfigError, Problem};
use crate::raw::RawTls;
use crate::raw::{
    RawAdmin, RawCircuit, RawFile, RawIngest, RawIntegration, RawPolicy, RawRetry, RawStore,
    RawWorker,
};
use crate::secret::Secret;
use crate::tls::{Tls, TlsVersion};
use crate::{
    AdminSettings, Config, IngestSettings, OperationalSettings, StoreSettings, TOKEN_MIN,
    WorkerSettings,
};

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_TIMEOUT: Duration = Duration::from_secs(300);
/// The longest span any setting takes.
const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);
const DEFAULT_CONCURRENCY: usize = 32;
/// The largest count of a `rate_limit`.
const MAX_RATE_COUNT: u32 = 1_000_000;

/// Headers alertpost sets itself; configuring them would break delivery or
/// signatures.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
];

pub(crate) fn config(
    text: &str,
    origin: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        let mut problem = Problem::file(origin, e.message().trim().to_owned());
        if let Some(span) = e.span() {
            let (line, column) = line_col(text, span.start);
            problem.line = Some(line);
            problem.column = Some(column);
            problem.section = section_at(text, span.start);
        }
        ConfigError::single(problem)
    })?;

    let mut cx = Cx {
        text,
        origin,
        env,
        problems: Vec::new(),
    };
    let policy = raw.policy.map(|p| cx.policy(p)).unwrap_or_default();
    let worker = raw.worker.map(|w| cx.worker(w)).unwrap_or_default();
    let store = raw.store.map(|s| cx.store(s)).unwrap_or_default();
    let admin = raw.admin.map(|a| cx.admin(a)).unwrap_or_default();
    let ingest = raw.ingest.map(|i| cx.ingest(i)).unwrap_or_default();
    let mut operational = OperationalSettings::default();
    if let Some(r) = raw
        .operational
        .as_ref()
        .and_then(|o| o.get_ref().repeat_interval.as_ref())
        && let Some(d) = cx.duration(r, "[operational]", "repeat_interval")
    {
        operational.repeat_interval = d;
    }
    let delay_tiers = match &raw.delay_tiers {
        Some(t) => cx.delay_tiers(t),
        None => alertpost_seam::topology::DEFAULT_TIERS.to_vec(),
    };
    let defaults = match &raw.defaults {
        Some(d) => {
            if let Some(id) = &d.get_ref().id {
                cx.problem(
                    id.span(),
                    "[defaults]",
                    Some("id"),
                    "ids are per integration; remove it from [defaults]",
                );
            }
            cx.partial(d.get_ref(), "[defaults]")
        }
        None => Partial::default(),
    };

    let mut integrations: Vec<(Integration, Range<usize>)> = Vec::new();
    for (n, raw) in raw.integration.iter().enumerate() {
        let Some(integration) = cx.integration(n, raw, &defaults, &policy) else {
            continue;
        };
        if let Some((_, first)) = integrations.iter().find(|(i, _)| i.id == integration.id) {
            let (first_line, _) = line_col(text, first.start);
            let span = raw.get_ref().id.as_ref().map_or(raw.span(), |s| s.span());
            let section = format!("integration `{}`", integration.id);
            cx.problem(
                span,
                &section,
                Some("id"),
                &format!("duplicate id; already used by the integration at line {first_line}"),
            );
            continue;
        }
        let span = raw.get_ref().id.as_ref().map_or(raw.span(), |s| s.span());
        integrations.push((integration, span));
    }

    if cx.problems.is_empty() {
        Ok(Config {
            policy,
            worker,
            store,
            admin,
            ingest,
            operational,
            delay_tiers,
            integrations: integrations.into_iter().map(|(i, _)| i).collect(),
        })
    } else {
        Err(ConfigError {
            problems: cx.problems,
        })
    }
}

struct Cx<'a> {
    text: &'a str,
    origin: &'a str,
    env: &'a dyn Fn(&str) -> Option<String>,
    problems: Vec<Problem>,
}

/// One section's own validated values, before merging.
#[derive(Default)]
struct Partial {
    name: Option<String>,
    enabled: Option<bool>,
    url: Option<(Url, Auth, Range<usize>)>,
    /// A url was written, valid or not (an invalid one is already reported).
    url_written: bool,
    method: Option<Method>,
    headers: Option<Vec<Header>>,
    timeout: Option<Duration>,
    concurrency: Option<usize>,
    filter: Option<Filter>,
    body: Option<BodySpec>,
    content_type: Option<String>,
    auth: Option<Auth>,
    auth_written: bool,
    signing_key: Option<SigningKey>,
    validate: Option<Vec<Validator>>,
    routing_key: Option<Secret>,
    retry: RetryPartial,
    circuit: (Option<u32>, Option<Duration>),
    rate_limit: Option<RateLimit>,
    kinds: Option<Kinds>,
    send_resolved: Option<bool>,
    proxy: Option<Proxy>,
    /// With the span of the `tls` table, for problems found when merging.
    tls: Option<(Tls, Range<usize>)>,
}

/// A `retry` table's own values; each field merges with `[defaults]` on its own.
#[derive(Default, Clone, Copy)]
struct RetryPartial {
    max_attempts: Option<u32>,
    initial: Option<Duration>,
    max_interval: Option<Duration>,
    multiplier: Option<f64>,
    max_age: Option<Duration>,
    jitter: Option<f64>,
}

impl Cx<'_> {
    fn problem(&mut self, span: Range<usize>, section: &str, field: Option<&str>, message: &str) {
        let (line, column) = line_col(self.text, span.start);
        self.problems.push(Problem {
            origin: self.origin.to_owned(),
            line: Some(line),
            column: Some(column),
            section: Some(section.to_owned()),
            field: field.map(str::to_owned),
            message: message.to_owned(),
        });
    }

    fn policy(&mut self, raw: Spanned<RawPolicy>) -> Policy {
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

    fn worker(&mut self, raw: Spanned<RawWorker>) -> WorkerSettings {
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

    /// `rate_limit = "<count>/<s|m|h>"`.
    fn rate_limit(&mut self, raw: &Spanned<String>, section: &str) -> Option<RateLimit> {
        let text = raw.get_ref().trim();
        let parsed = text.split_once('/').and_then(|(count, unit)| {
            let count: u32 = count.trim().parse().ok()?;
            let per = match unit.trim() {
                "s" => Duration::from_secs(1),
                "m" => Duration::from_secs(60),
                "h" => Duration::from_secs(3600),
                _ => return None,
            };
            Some(RateLimit { count, per })
        });
        match parsed {
            Some(r) if (1..=MAX_RATE_COUNT).contains(&r.count) => Some(r),
            Some(_) => {
                self.problem(
                    raw.span(),
                    section,
                    Some("rate_limit"),
                    &format!("the count must be between 1 and {MAX_RATE_COUNT}"),
                );
                None
            }
            None => {
                self.problem(
                    raw.span(),
                    section,
                    Some("rate_limit"),
                    &format!(
                        "`{text}` is not a rate; write requests per second, minute or hour, e.g. \"50/s\", \"600/m\""
                    ),
                );
                None
            }
        }
    }

    /// `tls = {...}`: every file read and checked now.
    fn tls(&mut self, raw: &Spanned<RawTls>, section: &str) -> Option<Tls> {
        let t = raw.get_ref();
        let before = self.problems.len();
        let mut tls = Tls {
            ca_pem: None,
            identity_pem: None,
            server_name: None,
            min_version: None,
            files: Vec::new(),
        };
        if t.ca_file.is_none()
            && t.cert_file.is_none()
            && t.key_file.is_none()
            && t.server_name.is_none()
            && t.min_version.is_none()
        {
            self.problem(
                raw.span(),
                section,
                Some("tls"),
                "sets nothing; give ca_file, cert_file and key_file, server_name or min_version",
            );
            return None;
        }
        if let Some(ca) = &t.ca_file {
            let path = self.path(ca, section, "tls.ca_file")?;
            match crate::tls::certificates(&path) {
                Ok((pem, _)) => tls.ca_pem = Some(pem),
                Err(message) => self.problem(ca.span(), section, Some("tls.ca_file"), &message),
            }
            tls.files.push(path);
        }
        match (&t.cert_file, &t.key_file) {
            (Some(cert), Some(key)) => {
                let cert_path = self.path(cert, section, "tls.cert_file");
                let key_path = self.path(key, section, "tls.key_file");
                if let (Some(cert_path), Some(key_path)) = (cert_path, key_path) {
                    match crate::tls::certificates(&cert_path) {
                        Err(message) => {
                            self.problem(cert.span(), section, Some("tls.cert_file"), &message)
                        }
                        Ok((pem, chain)) => match crate::tls::identity(&pem, chain, &key_path) {
                            Ok(identity) => tls.identity_pem = Some(identity),
                            Err(message) => {
                                self.problem(key.span(), section, Some("tls.key_file"), &message)
                            }
                        },
                    }
                    tls.files.extend([cert_path, key_path]);
                }
            }
            (Some(only), None) | (None, Some(only)) => self.problem(
                only.span(),
                section,
                Some(if t.cert_file.is_some() {
                    "tls.cert_file"
                } else {
                    "tls.key_file"
                }),
                "cert_file and key_file go together (the client certificate and its key)",
            ),
            (None, None) => {}
        }
        if let Some(name) = &t.server_name {
            match rustls_pki_types::ServerName::try_from(name.get_ref().trim()) {
                Ok(rustls_pki_types::ServerName::DnsName(_)) => {
                    tls.server_name = Some(name.get_ref().trim().to_owned())
                }
                _ => self.problem(
                    name.span(),
                    section,
                    Some("tls.server_name"),
                    &format!("`{}` is not a DNS name", name.get_ref()),
                ),
            }
        }
        if let Some(v) = &t.min_version {
            match v.get_ref().trim() {
                "1.2" => tls.min_version = Some(TlsVersion::V1_2),
                "1.3" => tls.min_version = Some(TlsVersion::V1_3),
                other => self.problem(
                    v.span(),
                    section,
                    Some("tls.min_version"),
                    &format!(
                        "`{other}` is not a TLS version alertpost offers; write \"1.2\" or \"1.3\""
                    ),
                ),
            }
        }
        (self.problems.len() == before).then_some(tls)
    }

    /// A file named in the config: `${VAR}` expanded, relative to the
    /// config file's directory.
    fn path(&mut self, raw: &Spanned<String>, section: &str, field: &str) -> Option<PathBuf> {
        let (text, _) = self.expand(raw, section, field)?;
        let path = PathBuf::from(text.trim());
        Some(match Path::new(self.origin).parent() {
            Some(dir) if path.is_relative() => dir.join(path),
            _ => path,
        })
    }

    /// `proxy = "http://[user:pass@]host:port"` (`${VAR}` expanded).
    fn proxy(&mut self, raw: &Spanned<String>, section: &str) -> Option<Proxy> {
        let (text, _) = self.expand(raw, section, "proxy")?;
        let problem = match Url::parse(text.trim()) {
            Err(e) => Err(format!("not a valid URL ({e})")),
            Ok(u) if !matches!(u.scheme(), "http" | "https") => Err(format!(
                "scheme `{}` is not supported; use http or https",
                u.scheme()
            )),
            Ok(u) if u.host_str().is_none_or(str::is_empty) => Err("has no host".to_owned()),
            Ok(u) if u.path() != "/" || u.query().is_some() || u.fragment().is_some() => {
                Err("is a proxy's address: scheme, host and port only".to_owned())
            }
            Ok(u) => Ok(u),
        };
        match problem {
            Ok(u) => Some(Proxy {
                shown: url_origin(&u),
                url: Secret::new(text.trim()),
            }),
            Err(message) => {
                // The text may hold a password: not repeated here.
                self.problem(raw.span(), section, Some("proxy"), &message);
                None
            }
        }
    }

    /// `kinds = ["alert", "integration.status"]`, or `["*"]` for any.
    fn kinds(&mut self, raw: &Spanned<Vec<Spanned<String>>>, section: &str) -> Option<Kinds> {
        if raw.get_ref().is_empty() {
            self.problem(
                raw.span(),
                section,
                Some("kinds"),
                "lists no kind; leave it out for [\"alert\"], or write [\"*\"] for every kind",
            );
            return None;
        }
        let mut list = Vec::new();
        let (mut any, mut valid) = (false, true);
        for kind in raw.get_ref() {
            let k = kind.get_ref().as_str();
            if k == "*" {
                any = true;
                continue;
            }
            if let Some(reason) = alertpost_event::event::name_problem(k) {
                self.problem(
                    kind.span(),
                    section,
                    Some("kinds"),
                    &format!("`{k}` is not an event kind: {reason}"),
                );
                valid = false;
            }
            list.push(k.to_owned());
        }
        match (valid, any) {
            (false, _) => None,
            (true, true) => Some(Kinds::Any),
            (true, false) => Some(Kinds::Only(list)),
        }
    }

    fn duration(&mut self, raw: &Spanned<String>, section: &str, field: &str) -> Option<Duration> {
        match humantime::parse_duration(raw.get_ref().trim()) {
            Ok(d) if d > MAX_DURATION => {
                // Clocks plus such spans overflow; no setting needs them.
                self.problem(raw.span(), section, Some(field), "must be at most 365 days");
                None
            }
            Ok(d) if !d.is_zero() => Some(d),
            Ok(_) => {
                self.problem(raw.span(), section, Some(field), "must be longer than zero");
                None
            }
            Err(e) => {
                self.problem(
                    raw.span(),
                    section,
                    Some(field),
                    &format!(
                        "`{}` is not a duration ({e}); write e.g. \"5s\", \"250ms\", \"1h\"",
                        raw.get_ref()
                    ),
                );
                None
            }
        }
    }

    /// One configured header (`headers`, or `auth.headers` of a header
    /// auth: `prefix`): a valid name that alertpost does not set itself,
    /// a value without line breaks once expanded. One check for both, so
    /// neither can let through what the other refuses.
    pub(super) fn header(
        &mut self,
        name: &Spanned<String>,
        value: &Spanned<String>,
        section: &str,
        prefix: &str,
        secret: bool,
    ) -> Option<Header> {
        let lower = name.get_ref().to_ascii_lowercase();
        let field = format!("{prefix}.{}", name.get_ref());
        if lower.is_empty() || !lower.bytes().all(is_token_byte) {
            self.problem(
                name.span(),
                section,
                Some(&field),
                "not a valid header name",
            );
            return None;
        }
        if RESERVED_HEADERS.contains(&lower.as_str()) || lower.starts_with("alertpost-") {
            self.problem(
                name.span(),
                section,
                Some(&field),
                "alertpost sets this header itself; remove it",
            );
            return None;
        }
        let (text, from_env) = self.expand(value, section, &field)?;
        if text.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            self.problem(
                value.span(),
                section,
                Some(&field),
                "header values cannot contain line breaks",
            );
            return None;
        }
        let sensitive = secret || from_env || looks_secret(&lower);
        Some(Header {
            name: lower,
            value: Secret::new(text),
            sensitive,
        })
    }

    /// `${VAR}`-expands a string; on failure records the problem.
    fn expand(
        &mut self,
        raw: &Spanned<String>,
        section: &str,
        field: &str,
    ) -> Option<(String, bool)> {
        match expand(raw.get_ref(), self.env) {
            Ok(e) => Some((e.value, e.from_env)),
            Err(message) => {
                self.problem(raw.span(), section, Some(field), &message);
                None
            }
        }
    }

    /// Validates the values one section sets itself.
    fn partial(&mut self, raw: &RawIntegration, section: &str) -> Partial {
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

    fn circuit(&mut self, raw: &RawCircuit, section: &str) -> (Option<u32>, Option<Duration>) {
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

    fn retry(&mut self, raw: &RawRetry, section: &str) -> RetryPartial {
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

    fn store(&mut self, raw: Spanned<RawStore>) -> StoreSettings {
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

    fn admin(&mut self, raw: Spanned<RawAdmin>) -> AdminSettings {
        AdminSettings {
            token: raw
                .into_inner()
                .token
                .as_ref()
                .and_then(|t| self.token(t, "[admin]", "token")),
        }
    }

    fn ingest(&mut self, raw: Spanned<RawIngest>) -> IngestSettings {
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
    fn token(&mut self, raw: &Spanned<String>, section: &str, field: &str) -> Option<Secret> {
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

    fn delay_tiers(&mut self, raw: &Spanned<Vec<Spanned<String>>>) -> Vec<Duration> {
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

    fn integration(
        &mut self,
        n: usize,
        raw: &Spanned<RawIntegration>,
        defaults: &Partial,
        policy: &Policy,
    ) -> Option<Integration> {
        let span = raw.span();
        let raw = raw.get_ref();
        let before = self.problems.len();

        let id = match &raw.id {
            Some(id) if valid_id(id.get_ref()) => Some(id.get_ref().clone()),
            Some(id) => {
                let section = format!("integration #{}", n + 1);
                self.problem(
                    id.span(),
                    &section,
                    Some("id"),
                    &format!(
                        "`{}` is not a valid id (1 to 64 letters, digits, `-`, `_`)",
                        id.get_ref()
                    ),
                );
                None
            }
            None => {
                let section = format!("integration #{}", n + 1);
                self.problem(span.clone(), &section, Some("id"), "required");
                None
            }
        };
        let section = match &id {
            Some(id) => format!("integration `{id}`"),
            None => format!("integration #{}", n + 1),
        };
        let own = self.partial(raw, &section);

        let url_written = own.url_written || defaults.url_written;
        let url = own.url.or_else(|| defaults.url.clone());
        if !url_written {
            self.problem(span.clone(), &section, Some("url"), "required");
        }
        if let Some((url, _, url_span)) = &url {
            self.check_policy(url, url_span, &section, "url", policy);
        }
        let url_auth = url
            .as_ref()
            .map(|(_, a, _)| a.clone())
            .unwrap_or(Auth::None);
        let auth = match (url_auth, own.auth.or_else(|| defaults.auth.clone())) {
            (Auth::None, Some(auth)) => auth,
            (url_auth, None) => url_auth,
            (_, Some(_)) => {
                let at = raw.auth.as_ref().map_or(span.clone(), Spanned::span);
                self.problem(
                    at,
                    &section,
                    Some("auth"),
                    "credentials are in the URL and in `auth`; keep one",
                );
                Auth::None
            }
        };
        if (own.auth_written || defaults.auth_written)
            && matches!(auth, Auth::None)
            && self.problems.len() > before
        {
            return None;
        }
        if let Auth::OAuth2(o) = &auth {
            let at = raw.auth.as_ref().map_or(span.clone(), Spanned::span);
            self.check_policy(&o.token_url, &at, &section, "auth.token_url", policy);
        }
        let own_tls = own.tls.is_some();
        let tls = own.tls.or_else(|| defaults.tls.clone());
        let proxy = own.proxy.or_else(|| defaults.proxy.clone());
        if let (Some((tls, tls_span)), Some((url, _, _))) = (&tls, &url) {
            if own_tls && url.scheme() != "https" {
                self.problem(
                    tls_span.clone(),
                    &section,
                    Some("tls"),
                    "is set, but the url is not https",
                );
            }
            if tls.server_name.is_some() {
                let ip_host = matches!(url.host(), Some(url::Host::Ipv4(_) | url::Host::Ipv6(_)));
                let problem = if !ip_host {
                    Some(
                        "needs a url whose host is an IP address (a host name is the name the certificate is checked against)",
                    )
                } else if proxy.is_some() {
                    Some("cannot be used with a proxy (the proxy connects by name)")
                } else {
                    None
                };
                if let Some(message) = problem {
                    self.problem(tls_span.clone(), &section, Some("tls.server_name"), message);
                }
            }
        }
        let routing_key = own.routing_key.or_else(|| defaults.routing_key.clone());
        let content_type = own
            .content_type
            .or_else(|| defaults.content_type.clone())
            .unwrap_or_else(|| "application/json".to_owned());
        let spec = own
            .body
            .or_else(|| defaults.body.clone())
            .unwrap_or_else(|| BodySpec::Format("alertpost".to_owned()));
        if matches!(&spec, BodySpec::Format(f) if f == "pagerduty") && routing_key.is_none() {
            self.problem(
                span.clone(),
                &section,
                Some("routing_key"),
                "required by format pagerduty (the integration key of the PagerDuty service)",
            );
        }
        let body_source = match &spec {
            BodySpec::Format(name) => format!("format {name}"),
            BodySpec::Template(..) => "template".to_owned(),
        };
        // Compiled even when other fields have problems, so every problem
        // of the integration is listed at once.
        let body = self.body(&spec, &content_type, &section, routing_key.as_ref());
        if self.problems.len() > before {
            return None;
        }
        let body = body?;
        let (url, _, _) = url?;
        let id = id?;
        Some(Integration {
            name: own
                .name
                .or_else(|| defaults.name.clone())
                .unwrap_or_else(|| id.clone()),
            id,
            enabled: own.enabled.or(defaults.enabled).unwrap_or(true),
            url,
            method: own.method.or(defaults.method).unwrap_or(Method::Post),
            headers: merge_headers(defaults.headers.as_deref(), own.headers),
            auth,
            timeout: own.timeout.or(defaults.timeout).unwrap_or(DEFAULT_TIMEOUT),
            concurrency: own
                .concurrency
                .or(defaults.concurrency)
                .unwrap_or(DEFAULT_CONCURRENCY),
            filter: own
                .filter
                .or_else(|| defaults.filter.clone())
                .unwrap_or_default(),
            body,
            body_source,
            content_type,
            signing_key: own.signing_key.or_else(|| defaults.signing_key.clone()),
            validate: own
                .validate
                .or_else(|| defaults.validate.clone())
                .unwrap_or_default(),
            routing_key,
            retry: merge_retry(own.retry, defaults.retry),
            rate_limit: own.rate_limit.or(defaults.rate_limit),
            kinds: own
                .kinds
                .or_else(|| defaults.kinds.clone())
                .unwrap_or_default(),
            send_resolved: own.send_resolved.or(defaults.send_resolved).unwrap_or(true),
            proxy,
            tls: tls.map(|(tls, _)| tls),
            circuit: CircuitPolicy {
                failures: own
                    .circuit
                    .0
                    .or(defaults.circuit.0)
                    .unwrap_or(CircuitPolicy::default().failures),
                cooldown: own
                    .circuit
                    .1
                    .or(defaults.circuit.1)
                    .unwrap_or(CircuitPolicy::default().cooldown),
            },
        })
    }

    fn check_policy(
        &mut self,
        url: &Url,
        span: &Range<usize>,
        section: &str,
        field: &str,
        policy: &Policy,
    ) {
        if policy.require_https && url.scheme() != "https" {
            self.problem(
                span.clone(),
                section,
                Some(field),
                "the policy requires https ([policy] require_https = true)",
            );
        }
        let ip = match url.host() {
            Some(url::Host::Ipv4(v4)) => Some(std::net::IpAddr::V4(v4)),
            Some(url::Host::Ipv6(v6)) => Some(std::net::IpAddr::V6(v6)),
            _ => None,
        };
        if let Some(ip) = ip
            && !policy.permits(ip)
        {
            self.problem(
                    span.clone(),
                    section,
                    Some(field),
                    &format!(
                        "{} is not a public address; list its network in [policy] allow_networks to allow it",
                        canonical(ip)
                    ),
                );
        }
    }
}

/// An integration's `retry`, field by field over `[defaults]`, over the
/// built-in defaults.
fn merge_retry(own: RetryPartial, defaults: RetryPartial) -> RetryPolicy {
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

/// `256MiB`, `2GiB`, `500MB`, `1048576`: a size in bytes.
fn parse_size(text: &str) -> Option<u64> {
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

/// `[defaults]` headers, with the integration's own added or overriding.
fn merge_headers(defaults: Option<&[Header]>, own: Option<Vec<Header>>) -> Vec<Header> {
    let mut merged: Vec<Header> = defaults.map(<[Header]>::to_vec).unwrap_or_default();
    for header in own.unwrap_or_default() {
        merged.retain(|h| h.name != header.name);
        merged.push(header);
    }
    merged
}

/// Parses a URL, moving `user:pass@` (percent-decoded) into basic auth so the
/// URL itself carries no credentials.
fn parse_url(text: &str) -> Result<(Url, Auth), String> {
    let mut url = Url::parse(text.trim()).map_err(|e| format!("not a valid URL ({e})"))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(format!(
            "scheme `{}` is not supported; use http or https",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("the URL has no host".to_owned());
    }
    if url.fragment().is_some() {
        return Err("the URL has a #fragment, which is never sent; remove it".to_owned());
    }
    let auth = if url.username().is_empty() && url.password().is_none() {
        Auth::None
    } else {
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let auth = Auth::Basic {
            username: decode(url.username()),
            password: Secret::new(decode(url.password().unwrap_or(""))),
        };
        // Setting empty credentials on an http(s) URL with a host cannot fail.
        let _ = url.set_username("");
        let _ = url.set_password(None);
        auth
    };
    Ok((url, auth))
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// RFC 9110 token characters.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Whether a header (lowercase name) likely carries a credential: its value
/// is masked wherever alertpost shows or keeps it (configured headers in
/// `alertpost test`, response headers in the store).
pub fn looks_secret(name: &str) -> bool {
    // Compared byte by byte: names are short, and `str::contains` prepares
    // a searcher per needle (callgrind: 5 000 instructions a delivery, for
    // the three headers of a response).
    let name = name.as_bytes();
    [
        "cookie",
        "token",
        "key",
        "secret",
        "password",
        "auth",
        "signature",
        "session",
    ]
    .iter()
    .any(|w| name.windows(w.len()).any(|part| part == w.as_bytes()))
}

/// 1-based line and column (in characters) of a byte offset.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..text.floor_char_boundary(offset)];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// The section a byte offset falls in, for errors the TOML parser reports
/// before any structure is known: the last table header above it, and for
/// an integration the `id` written under that header.
fn section_at(text: &str, offset: usize) -> Option<String> {
    let offset = text.floor_char_boundary(offset.min(text.len()));
    let mut section = None;
    let mut count = 0;
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        if pos > offset {
            break;
        }
        let t = line.trim();
        if t.starts_with('[') {
            let name = t
                .trim_start_matches('[')
                .split(']')
                .next()
                .unwrap_or("")
                .trim();
            if name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
            {
                section = Some(name.to_owned());
                if t.starts_with("[[integration]]") {
                    count += 1;
                }
            }
        }
        pos += line.len();
    }
    let name = section?;
    if name != "integration" {
        return Some(format!("[{name}]"));
    }
    // Find the id of the integration that contains `offset`.
    let id = text.split("[[integration]]").nth(count).and_then(|block| {
        block.lines().find_map(|l| {
            let (key, value) = l.split_once('=')?;
            (key.trim() == "id").then(|| value.trim().trim_matches('"').to_owned())
        })
    });
    Some(match id {
        Some(id) => format!("integration `{id}`"),
        None => format!("integration #{count}"),
    })
}

#[cfg(test)]
mod tests;
