//! The readers every section shares: durations, rates, event kinds,
//! paths, proxies, headers, URLs, and the outbound policy a URL is held
//! to at load.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;
use url::Url;

use super::Cx;
use super::looks_secret;
use crate::integration::{Auth, Header, Kinds, Order, Proxy, RateLimit, url_origin};
use crate::policy::{Policy, canonical};
use crate::secret::Secret;

/// The longest span any setting takes.
const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);
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

impl Cx<'_> {
    pub(super) fn duration(
        &mut self,
        raw: &Spanned<String>,
        section: &str,
        field: &str,
    ) -> Option<Duration> {
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

    /// `rate_limit = "<count>/<s|m|h>"`.
    pub(super) fn rate_limit(&mut self, raw: &Spanned<String>, section: &str) -> Option<RateLimit> {
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

    /// `order = "latest" | "none"`.
    pub(super) fn order(&mut self, raw: &Spanned<String>, section: &str) -> Option<Order> {
        match raw.get_ref().as_str() {
            "latest" => Some(Order::Latest),
            "none" => Some(Order::None),
            "fifo" => {
                self.problem(
                    raw.span(),
                    section,
                    Some("order"),
                    "`fifo` is not supported yet; write \"latest\" (only the newest event of an alert is sent, in order) or \"none\"",
                );
                None
            }
            other => {
                self.problem(
                    raw.span(),
                    section,
                    Some("order"),
                    &format!("`{other}` is not an order; write \"latest\" or \"none\""),
                );
                None
            }
        }
    }

    /// `kinds = ["alert", "integration.status"]`, or `["*"]` for any.
    pub(super) fn kinds(
        &mut self,
        raw: &Spanned<Vec<Spanned<String>>>,
        section: &str,
    ) -> Option<Kinds> {
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
            if let Some(reason) = alertpost_event::prepare::name_problem(k) {
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

    /// A file named in the config: `${VAR}` expanded, relative to the
    /// config file's directory.
    pub(super) fn path(
        &mut self,
        raw: &Spanned<String>,
        section: &str,
        field: &str,
    ) -> Option<PathBuf> {
        let (text, _) = self.expand(raw, section, field)?;
        let path = PathBuf::from(text.trim());
        Some(match Path::new(self.file).parent() {
            Some(dir) if path.is_relative() => dir.join(path),
            _ => path,
        })
    }

    /// `proxy = "http://[user:pass@]host:port"` (`${VAR}` expanded).
    pub(super) fn proxy(&mut self, raw: &Spanned<String>, section: &str) -> Option<Proxy> {
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

    pub(super) fn check_policy(
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

/// Parses a URL, moving `user:pass@` (percent-decoded) into basic auth so the
/// URL itself carries no credentials.
pub(super) fn parse_url(text: &str) -> Result<(Url, Auth), String> {
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

/// RFC 9110 token characters.
pub(super) fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}
