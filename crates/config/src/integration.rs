//! A validated integration: one webhook destination and how to deliver to it.

use alertpost_event::event::DEFAULT_KIND;
use std::fmt;
use std::time::Duration;

use alertpost_render::Body;
use url::Url;

use crate::filter::Filter;
use crate::secret::Secret;

/// One webhook integration, with `[defaults]` applied. Its `Debug` shows
/// the URL without path or query ([`url_origin`]): many webhook URLs carry
/// their secret there (Slack's, Grafana OnCall's).
#[derive(Clone)]
pub struct Integration {
    /// Stable id: letters, digits, `-`, `_`. The metrics label and store key.
    pub id: String,
    pub name: String,
    pub enabled: bool,
    /// The destination, without any `user:pass@` (moved to [`Auth::Basic`]).
    pub url: Url,
    pub method: Method,
    /// Configured headers, in file order, names lowercased.
    pub headers: Vec<Header>,
    pub auth: Auth,
    /// Bound on one attempt, connect to last byte.
    pub timeout: Duration,
    /// Attempts in flight at once to this integration, per worker.
    pub concurrency: usize,
    /// Which events it gets (`match`).
    pub filter: Filter,
    /// The request body: a preset (`format`) or a `template`.
    pub body: Body,
    /// Where the body came from, for displays: `format alertpost`, `template`.
    pub body_source: String,
    pub content_type: String,
    /// Standard Webhooks signing key (`secret = "whsec_..."`).
    pub signing_key: Option<SigningKey>,
    /// Response checks (`validate`): a 2xx that fails one is retried.
    pub validate: Vec<Validator>,
    /// PagerDuty's routing key, for templates (`integration.routing_key`).
    pub routing_key: Option<Secret>,
    /// When to try again after a failed attempt (`retry`).
    pub retry: RetryPolicy,
    /// When to stop sending for a while (`circuit`).
    pub circuit: CircuitPolicy,
    /// Requests started per period at most, per worker (`rate_limit`).
    pub rate_limit: Option<RateLimit>,
    /// The event kinds it receives (`kinds`; `["alert"]` by default, `*`
    /// for any).
    pub kinds: Kinds,
    /// Whether resolved events go to it (`send_resolved`, default true).
    pub send_resolved: bool,
    /// What it hears of one alert's events, in what order (`order`).
    pub order: Order,
    /// The HTTP proxy its requests (and OAuth token fetches) go through.
    pub proxy: Option<Proxy>,
    /// Its own TLS settings (`tls`): a private CA, a client certificate.
    pub tls: Option<crate::tls::Tls>,
}

/// `proxy = "http://[user:pass@]host:port"`. The URL is a secret (it may
/// hold credentials); `shown` is what displays and logs may print.
#[derive(Clone, PartialEq)]
pub struct Proxy {
    pub url: Secret,
    /// `scheme://host:port`.
    pub shown: String,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

/// `rate_limit = "50/s"`: at most `count` requests started per `per`, with
/// bursts of up to `count` (a token bucket), per worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub count: u32,
    pub per: Duration,
}

impl std::fmt::Display for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let unit = match self.per.as_secs() {
            1 => "s",
            60 => "m",
            _ => "h",
        };
        write!(f, "{}/{unit}", self.count)
    }
}

/// The event kinds an integration receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kinds {
    Any,
    Only(Vec<String>),
}

impl Default for Kinds {
    fn default() -> Kinds {
        // The one kind integrations receive unless they list others.
        Kinds::Only(vec![DEFAULT_KIND.to_owned()])
    }
}

impl Kinds {
    pub fn admits(&self, kind: &str) -> bool {
        // An event not yet prepared has no kind: it is an alert.
        let kind = if kind.is_empty() { DEFAULT_KIND } else { kind };
        match self {
            Kinds::Any => true,
            Kinds::Only(list) => list.iter().any(|k| k == kind),
        }
    }
}

/// `scheme://host[:port]`, and `/…` when the URL has more: what logs and
/// debug output may show of a destination.
pub fn url_origin(url: &Url) -> String {
    let mut shown = format!("{}://{}", url.scheme(), url.host_str().unwrap_or(""));
    if let Some(port) = url.port() {
        shown.push_str(&format!(":{port}"));
    }
    if url.path() != "/" || url.query().is_some() {
        shown.push_str("/…");
    }
    shown
}

impl std::fmt::Debug for Integration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Integration")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("enabled", &self.enabled)
            .field("url", &url_origin(&self.url))
            .field("method", &self.method)
            .field("headers", &self.headers)
            .field("auth", &self.auth)
            .field("timeout", &self.timeout)
            .field("concurrency", &self.concurrency)
            .field("filter", &self.filter)
            .field("body_source", &self.body_source)
            .field("rate_limit", &self.rate_limit)
            .field("kinds", &self.kinds)
            .field("send_resolved", &self.send_resolved)
            .field("order", &self.order)
            .field("proxy", &self.proxy)
            .field("tls", &self.tls)
            .field("content_type", &self.content_type)
            .field("signing_key", &self.signing_key)
            .field("validate", &self.validate)
            .field("routing_key", &self.routing_key)
            .field("retry", &self.retry)
            .field("circuit", &self.circuit)
            .finish_non_exhaustive()
    }
}

/// `order`: what a receiver hears of one alert's events (one `dedup_key`),
/// and in what order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    /// Only the newest event of an alert is ever sent: an older one still
    /// waiting (for a retry, its turn) when a newer one comes is
    /// superseded, and a newer one waits for an older one in flight, so
    /// arrivals keep their order.
    #[default]
    Latest,
    /// Every delivery as it comes, in parallel: no order per alert.
    None,
}

impl Order {
    pub fn as_str(self) -> &'static str {
        match self {
            Order::Latest => "latest",
            Order::None => "none",
        }
    }
}

impl std::fmt::Display for Order {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `circuit = { failures, cooldown }`: after `failures` attempts in a row
/// fail in a way worth retrying, deliveries go straight to the delay queues
/// for `cooldown`, then one attempt probes. `failures = 0` turns it off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CircuitPolicy {
    pub failures: u32,
    pub cooldown: Duration,
}

impl Default for CircuitPolicy {
    fn default() -> CircuitPolicy {
        CircuitPolicy {
            failures: 10,
            cooldown: Duration::from_secs(30),
        }
    }
}

/// `retry = { max_attempts, initial, max_interval, multiplier, max_age, jitter }`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; then the delivery is dead
    /// (reason `exhausted`).
    pub max_attempts: u32,
    /// Delay after the first failed attempt.
    pub initial: Duration,
    /// Cap on one delay.
    pub max_interval: Duration,
    /// Each delay is the previous one times this.
    pub multiplier: f64,
    /// Counted from the first attempt; a delivery that would be tried later
    /// than this is dead (reason `expired`).
    pub max_age: Duration,
    /// Each delay is randomized by ± this fraction, so deliveries that failed
    /// together do not all come back at once.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 10,
            initial: Duration::from_secs(5),
            max_interval: Duration::from_secs(3600),
            multiplier: 2.0,
            max_age: Duration::from_secs(24 * 3600),
            jitter: 0.2,
        }
    }
}

impl Integration {
    /// The body of delivery `delivery_id` to this integration: the event's
    /// own encoding (`event_json`) when the body is the event, else its
    /// template rendered with `context` (the event, built once per message)
    /// and the integration's extras. One way, for deliveries and test
    /// deliveries alike.
    pub fn render_body(
        &self,
        event_json: &bytes::Bytes,
        context: Option<&alertpost_render::Context>,
        delivery_id: &str,
    ) -> Result<bytes::Bytes, alertpost_render::RenderError> {
        let Some(context) = context.filter(|_| !self.body.is_event()) else {
            return Ok(event_json.clone());
        };
        let extra = alertpost_render::Extra {
            integration_id: &self.id,
            integration_name: &self.name,
            routing_key: self.routing_key.as_ref().map(|k| k.expose()),
            delivery_id,
        };
        self.body.render(context, event_json, &extra)
    }

    /// The URL to show in logs and errors: scheme, host and port only, as
    /// paths and queries often carry tokens (Slack, OnCall).
    pub fn url_for_logs(&self) -> String {
        let host = self.url.host_str().unwrap_or("");
        match self.url.port() {
            Some(port) => format!("{}://{host}:{port}/…", self.url.scheme()),
            None => format!("{}://{host}/…", self.url.scheme()),
        }
    }

    /// Every secret of the integration as it may come back in an answer,
    /// longest first, to [`mask`] wherever one might be echoed (a routing
    /// key in the body, a token in a response, the URL in an error page):
    /// sensitive header values and their credentials, auth as configured
    /// and as sent (`Basic` encoded), the routing key, and the URL's path
    /// and query with their long parts (Slack and OnCall put tokens there).
    /// A token fetched at run time (OAuth2) is not among them.
    pub fn secret_values(&self) -> Vec<String> {
        let mut s: Vec<String> = Vec::new();
        let credential = |value: &str, s: &mut Vec<String>| {
            s.push(value.to_owned());
            // `Bearer <token>`: a receiver echoes the token alone.
            if let Some((_, rest)) = value.trim().split_once(' ') {
                s.push(rest.trim().to_owned());
            }
        };
        for h in self.headers.iter().filter(|h| h.sensitive) {
            credential(h.value.expose(), &mut s);
        }
        match &self.auth {
            Auth::Basic { username, password } => {
                use base64::Engine as _;
                s.push(password.expose().to_owned());
                // As sent: what an echoing receiver shows.
                s.push(
                    base64::engine::general_purpose::STANDARD
                        .encode(format!("{username}:{}", password.expose())),
                );
            }
            Auth::Bearer { token } => s.push(token.expose().to_owned()),
            Auth::OAuth2(o) => s.push(o.client_secret.expose().to_owned()),
            Auth::Header(h) => {
                for h in h {
                    credential(h.value.expose(), &mut s);
                }
            }
            Auth::None => {}
        }
        s.extend(self.routing_key.iter().map(|k| k.expose().to_owned()));
        let path = self.url.path();
        let long_parts = path
            .split('/')
            .chain(self.url.query().into_iter().flat_map(|q| {
                q.split('&')
                    .map(|kv| kv.split_once('=').map_or(kv, |(_, v)| v))
            }))
            .filter(|p| p.len() >= URL_PART_MIN)
            .map(str::to_owned)
            .collect::<Vec<_>>();
        // The whole path and query too, where they hold a token; a plain
        // `/hook` is no secret (and masking it would cost every delivery).
        if !long_parts.is_empty() {
            s.push(match self.url.query() {
                Some(q) => format!("{path}?{q}"),
                None => path.to_owned(),
            });
        }
        s.extend(long_parts);
        // Short values would mask ordinary text; they are not worth hiding there.
        s.retain(|v| v.len() >= MASKED_MIN);
        // Longest first: a secret inside another is masked whole.
        s.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        s.dedup();
        s
    }
}

/// Secrets shorter than this are not masked in text (see
/// [`Integration::secret_values`]).
const MASKED_MIN: usize = 4;
/// Path segments and query values this long are taken for tokens.
const URL_PART_MIN: usize = 16;

/// `text` with every one of `secrets` (longest first, as
/// [`Integration::secret_values`] gives them) replaced by `***`. A text
/// cut short (an excerpt of an answer) that ends in the start of a secret
/// has that end masked too.
pub fn mask(text: &str, secrets: &[String]) -> String {
    let mut out = secrets.iter().fold(text.to_owned(), |t, secret| {
        t.replace(secret.as_str(), "***")
    });
    for secret in secrets {
        let cut = (MASKED_MIN..secret.len())
            .rev()
            .filter(|n| secret.is_char_boundary(*n))
            .find(|n| out.ends_with(&secret[..*n]));
        if let Some(n) = cut {
            out.truncate(out.len() - n);
            out.push_str("***");
            break;
        }
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Post,
    Put,
    Patch,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A configured request header.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    /// Lowercase.
    pub name: String,
    pub value: Secret,
    /// Whether the value must be masked wherever a request is shown: it came
    /// from the environment, belongs to auth, or its name suggests a
    /// credential.
    pub sensitive: bool,
}

/// How requests to an integration authenticate.
#[derive(Debug, Clone, PartialEq)]
pub enum Auth {
    None,
    /// HTTP Basic: `{ type = "basic", username, password }`, or `user:pass@`
    /// in the URL (percent-decoded).
    Basic {
        username: String,
        password: Secret,
    },
    /// `Authorization: Bearer <token>`.
    Bearer {
        token: Secret,
    },
    /// OAuth 2 client credentials; the token is fetched and cached.
    OAuth2(OAuth2),
    /// Headers of one's choosing (`DD-API-KEY = ...`), all masked.
    Header(Vec<Header>),
}

impl Auth {
    pub fn kind(&self) -> &'static str {
        match self {
            Auth::None => "none",
            Auth::Basic { .. } => "basic",
            Auth::Bearer { .. } => "bearer",
            Auth::OAuth2(_) => "oauth2",
            Auth::Header(_) => "header",
        }
    }
}

/// OAuth 2 client credentials (RFC 6749 §4.4).
#[derive(Clone, PartialEq)]
pub struct OAuth2 {
    pub client_id: String,
    pub client_secret: Secret,
    pub token_url: Url,
    pub scopes: Vec<String>,
}

impl std::fmt::Debug for OAuth2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuth2")
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret)
            .field("token_url", &url_origin(&self.token_url))
            .field("scopes", &self.scopes)
            .finish()
    }
}

/// A Standard Webhooks signing key: the bytes behind `whsec_<base64>`.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey(pub(crate) Vec<u8>);

impl SigningKey {
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(***)")
    }
}

/// `{ path = "$.status", expected = ["ok", "accepted"] }`: the response body
/// is JSON and a value at `path` is one of `expected`.
#[derive(Debug, Clone)]
pub struct Validator {
    /// As written, for messages.
    pub path: String,
    pub query: serde_json_path::JsonPath,
    pub expected: Vec<String>,
}

impl Validator {
    /// Checks a response body; `Err` says what was found instead.
    pub fn check(&self, body: &[u8]) -> Result<(), String> {
        let json: serde_json::Value = serde_json::from_slice(body)
            .map_err(|_| format!("{}: the response body is not JSON", self.path))?;
        let found: Vec<String> = self
            .query
            .query(&json)
            .all()
            .into_iter()
            .map(|v| match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect();
        if found.iter().any(|v| self.expected.contains(v)) {
            return Ok(());
        }
        let got = if found.is_empty() {
            "nothing".to_owned()
        } else {
            found.join(", ")
        };
        Err(format!(
            "{}: found {got}, expected one of {}",
            self.path,
            self.expected.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn integration(toml: &str) -> Integration {
        let config = crate::parse(toml, "test.toml", &|_| None).unwrap_or_else(|e| panic!("{e}"));
        config.integrations[0].clone()
    }

    #[test]
    fn secrets_include_what_is_sent_and_the_url_longest_first() {
        let i = integration(
            "[[integration]]\nid = \"a\"\nurl = \"https://hooks.example.com/services/T0001/B0002/abcdefghijklmnopqrstuvwx?token=0123456789abcdef01\"\n\
             auth = { type = \"basic\", username = \"me\", password = \"hunter2hunter2\" }\n\
             headers = { authorization2 = \"Token sekrit-value-99\" }\n",
        );
        let s = i.secret_values();
        for expected in [
            "hunter2hunter2",
            // base64("me:hunter2hunter2")
            "bWU6aHVudGVyMmh1bnRlcjI=",
            "abcdefghijklmnopqrstuvwx",
            "0123456789abcdef01",
            "/services/T0001/B0002/abcdefghijklmnopqrstuvwx?token=0123456789abcdef01",
        ] {
            assert!(s.iter().any(|v| v == expected), "{expected} in {s:?}");
        }
        assert!(
            s.windows(2).all(|w| w[0].len() >= w[1].len()),
            "longest first: {s:?}"
        );
        let echoed = "POST /services/T0001/B0002/abcdefghijklmnopqrstuvwx?token=0123456789abcdef01 \
                      with Basic bWU6aHVudGVyMmh1bnRlcjI=";
        let masked = mask(echoed, &s);
        assert_eq!(masked, "POST *** with Basic ***");
        let plain =
            integration("[[integration]]\nid = \"a\"\nurl = \"https://example.com/hook\"\n");
        assert!(
            plain.secret_values().is_empty(),
            "a short path is no secret"
        );
    }

    #[test]
    fn a_text_cut_inside_a_secret_has_its_end_masked() {
        let secrets = vec!["receiver-secret-42".to_owned()];
        assert_eq!(mask("your token receiver-sec", &secrets), "your token ***");
        assert_eq!(
            mask("your token rec", &secrets),
            "your token rec",
            "too short to tell"
        );
        assert_eq!(
            mask("a receiver-secret-42 b", &secrets),
            "a *** b",
            "whole ones as before"
        );
    }
}
