//! An integration merged over `[defaults]` and the built-in defaults, and
//! checked as a whole: its id, its URL and credentials held to the
//! outbound policy, its TLS against its URL and proxy, its body compiled.
//! Every problem of the integration is listed, not only the first.

use std::ops::Range;
use std::time::Duration;

use toml::Spanned;
use url::Url;

use super::partial::{Partial, merge_headers, merge_retry};
use super::parts::BodySpec;
use super::{Cx, valid_id};
use crate::integration::{Auth, CircuitPolicy, Integration, Method, Proxy};
use crate::policy::Policy;
use crate::raw::RawIntegration;
use crate::secret::Secret;
use crate::tls::Tls;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_CONCURRENCY: usize = 32;

/// Where an integration's problems are reported: its table's span, and its
/// name in messages (`integration `id``, or `integration #n` without one).
struct At<'a> {
    span: &'a Range<usize>,
    section: &'a str,
}

impl Cx<'_> {
    /// The `n`-th `[[integration]]` table, merged over `defaults`; `None`
    /// when it has a problem (reported).
    pub(super) fn integration(
        &mut self,
        n: usize,
        raw: &Spanned<RawIntegration>,
        defaults: &Partial,
        policy: &Policy,
    ) -> Option<Integration> {
        let span = raw.span();
        let raw = raw.get_ref();
        let before = self.problems.len();
        let id = self.integration_id(n, raw, &span);
        let section = match &id {
            Some(id) => format!("integration `{id}`"),
            None => format!("integration #{}", n + 1),
        };
        let at = At {
            span: &span,
            section: &section,
        };
        let mut own = self.partial(raw, &section);
        let url = self.merged_url(&mut own, defaults, &at, policy);
        let auth = self.merged_auth(raw, &mut own, defaults, url.as_ref(), &at, policy);
        let written = own.auth_written || defaults.auth_written;
        if written && matches!(auth, Auth::None) && self.problems.len() > before {
            return None;
        }
        let own_tls = own.tls.is_some();
        let tls = own.tls.take().or_else(|| defaults.tls.clone());
        let proxy = own.proxy.take().or_else(|| defaults.proxy.clone());
        if let (Some(tls), Some((url, _, _))) = (&tls, &url) {
            self.tls_fits(tls, own_tls, url, proxy.as_ref(), &at);
        }
        let routing_key = own
            .routing_key
            .take()
            .or_else(|| defaults.routing_key.clone());
        let content_type = own
            .content_type
            .take()
            .or_else(|| defaults.content_type.clone())
            .unwrap_or_else(|| "application/json".to_owned());
        let spec = own
            .body
            .take()
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
        // Compiled even when other fields have problems, so every problem
        // of the integration is listed at once.
        let body = self.body(&spec, &content_type, &section, routing_key.as_ref());
        if self.problems.len() > before {
            return None;
        }
        let whole = Whole {
            id: id?,
            url: url?.0,
            auth,
            body: body?,
            body_source: match &spec {
                BodySpec::Format(name) => format!("format {name}"),
                BodySpec::Template(..) => "template".to_owned(),
            },
            content_type,
            routing_key,
            proxy,
            tls: tls.map(|(tls, _)| tls),
        };
        Some(whole.over(own, defaults))
    }

    /// The table's `id`: required, 1 to 64 letters, digits, `-`, `_`.
    fn integration_id(
        &mut self,
        n: usize,
        raw: &RawIntegration,
        span: &Range<usize>,
    ) -> Option<String> {
        let section = format!("integration #{}", n + 1);
        match &raw.id {
            Some(id) if valid_id(id.get_ref()) => Some(id.get_ref().clone()),
            Some(id) => {
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
                self.problem(span.clone(), &section, Some("id"), "required");
                None
            }
        }
    }

    /// The `url`, its own or `[defaults]`': required, held to the policy.
    fn merged_url(
        &mut self,
        own: &mut Partial,
        defaults: &Partial,
        at: &At<'_>,
        policy: &Policy,
    ) -> Option<(Url, Auth, Range<usize>)> {
        let url = own.url.take().or_else(|| defaults.url.clone());
        if !own.url_written && !defaults.url_written {
            self.problem(at.span.clone(), at.section, Some("url"), "required");
        }
        if let Some((url, _, url_span)) = &url {
            self.check_policy(url, url_span, at.section, "url", policy);
        }
        url
    }

    /// The credentials: those of the URL (`user:pass@`) or of `auth`, not
    /// both; an OAuth 2 token URL held to the policy.
    fn merged_auth(
        &mut self,
        raw: &RawIntegration,
        own: &mut Partial,
        defaults: &Partial,
        url: Option<&(Url, Auth, Range<usize>)>,
        at: &At<'_>,
        policy: &Policy,
    ) -> Auth {
        let auth_at = raw.auth.as_ref().map_or(at.span.clone(), Spanned::span);
        let url_auth = url.map(|(_, a, _)| a.clone()).unwrap_or(Auth::None);
        let auth = match (url_auth, own.auth.take().or_else(|| defaults.auth.clone())) {
            (Auth::None, Some(auth)) => auth,
            (url_auth, None) => url_auth,
            (_, Some(_)) => {
                self.problem(
                    auth_at.clone(),
                    at.section,
                    Some("auth"),
                    "credentials are in the URL and in `auth`; keep one",
                );
                Auth::None
            }
        };
        if let Auth::OAuth2(o) = &auth {
            self.check_policy(&o.token_url, &auth_at, at.section, "auth.token_url", policy);
        }
        auth
    }

    /// A `tls` table fits its URL: https for its own, and a `server_name`
    /// only with an IP address for a host and no proxy.
    fn tls_fits(
        &mut self,
        (tls, tls_span): &(Tls, Range<usize>),
        own_tls: bool,
        url: &Url,
        proxy: Option<&Proxy>,
        at: &At<'_>,
    ) {
        if own_tls && url.scheme() != "https" {
            self.problem(
                tls_span.clone(),
                at.section,
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
                self.problem(
                    tls_span.clone(),
                    at.section,
                    Some("tls.server_name"),
                    message,
                );
            }
        }
    }
}

/// The parts of an integration checked as a whole; the rest are taken
/// from its own table over `[defaults]` over the built-in defaults.
struct Whole {
    id: String,
    url: Url,
    auth: Auth,
    body: alertpost_render::Body,
    body_source: String,
    content_type: String,
    routing_key: Option<Secret>,
    proxy: Option<Proxy>,
    tls: Option<Tls>,
}

impl Whole {
    fn over(self, own: Partial, defaults: &Partial) -> Integration {
        let circuit = CircuitPolicy::default();
        Integration {
            name: own
                .name
                .or_else(|| defaults.name.clone())
                .unwrap_or_else(|| self.id.clone()),
            id: self.id,
            enabled: own.enabled.or(defaults.enabled).unwrap_or(true),
            url: self.url,
            method: own.method.or(defaults.method).unwrap_or(Method::Post),
            headers: merge_headers(defaults.headers.as_deref(), own.headers),
            auth: self.auth,
            timeout: own.timeout.or(defaults.timeout).unwrap_or(DEFAULT_TIMEOUT),
            concurrency: own
                .concurrency
                .or(defaults.concurrency)
                .unwrap_or(DEFAULT_CONCURRENCY),
            filter: own
                .filter
                .or_else(|| defaults.filter.clone())
                .unwrap_or_default(),
            body: self.body,
            body_source: self.body_source,
            content_type: self.content_type,
            signing_key: own.signing_key.or_else(|| defaults.signing_key.clone()),
            validate: own
                .validate
                .or_else(|| defaults.validate.clone())
                .unwrap_or_default(),
            routing_key: self.routing_key,
            retry: merge_retry(own.retry, defaults.retry),
            rate_limit: own.rate_limit.or(defaults.rate_limit),
            kinds: own
                .kinds
                .or_else(|| defaults.kinds.clone())
                .unwrap_or_default(),
            send_resolved: own.send_resolved.or(defaults.send_resolved).unwrap_or(true),
            order: own.order.or(defaults.order).unwrap_or_default(),
            proxy: self.proxy,
            tls: self.tls,
            circuit: CircuitPolicy {
                failures: own
                    .circuit
                    .0
                    .or(defaults.circuit.0)
                    .unwrap_or(circuit.failures),
                cooldown: own
                    .circuit
                    .1
                    .or(defaults.circuit.1)
                    .unwrap_or(circuit.cooldown),
            },
        }
    }
}
