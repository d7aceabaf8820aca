//! The HTTP client every attempt of a worker shares.
//!
//! Outbound policy is enforced where addresses are known: the resolver
//! drops every address the policy refuses, and the connection then uses
//! exactly the addresses it returned, so a DNS answer that changes between
//! check and connect (rebinding) cannot reach a refused address. URLs with a
//! literal IP skip resolvers; [`Client::permits_url`] checks those.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use alertpost_config::Policy;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Bound on establishing a TCP (and TLS) connection, under each
/// integration's total timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Idle keep-alive connections kept per host: no count, only the idle
/// timeout. A pool never holds more than the requests once in flight at
/// the same time (bounded by the integrations' concurrency and the
/// worker's window), and a cap below that closes and reopens connections
/// under steady load: measured with 4 integrations on one host at 256
/// each, a cap of 256 cost 60 % of the requests per second.
const IDLE_PER_HOST: usize = usize::MAX;

/// The shared client. Cheap to clone. `Debug` leaves out the reqwest
/// client: a proxied one's may show the proxy URL, credentials included.
#[derive(Clone)]
pub struct Client {
    pub(crate) http: reqwest::Client,
    pub(crate) policy: Arc<Policy>,
    /// `http` sends through a proxy: the proxy resolves the target, so
    /// the target is resolved and checked here first ([`Client::check`]).
    pub(crate) proxied: bool,
}

/// The error a connection attempt fails with when the policy refused every
/// address of the host; the attempt finds it in the error chain.
#[derive(Debug, thiserror::Error)]
#[error("{host} resolves only to addresses the outbound policy refuses ({addrs})")]
pub(crate) struct PolicyRefused {
    pub host: String,
    pub addrs: String,
}

/// An integration's own HTTP client.
#[derive(Clone)]
pub struct OwnClient {
    pub http: reqwest::Client,
    /// Its proxy, as logs may show it.
    pub proxy: Option<String>,
    /// For its OAuth token fetches: through its proxy, without its `tls`
    /// (the CA and the client certificate are the receiver's, not the
    /// token endpoint's); `None`: the worker's client.
    pub tokens: Option<reqwest::Client>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client: {0}")]
pub struct ClientError(String);

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("policy", &self.policy)
            .field("proxied", &self.proxied)
            .finish_non_exhaustive()
    }
}

impl Client {
    pub fn new(policy: Policy) -> Result<Client, ClientError> {
        let policy = Arc::new(policy);
        let http = builder()
            .no_proxy()
            .dns_resolver(Arc::new(PolicyResolver {
                policy: policy.clone(),
            }))
            .build()
            .map_err(|e| ClientError(e.to_string()))?;
        Ok(Client {
            http,
            policy,
            proxied: false,
        })
    }

    /// This client's policy with an integration's own client.
    pub(crate) fn through(&self, own: &OwnClient) -> Client {
        Client {
            http: own.http.clone(),
            policy: self.policy.clone(),
            proxied: own.proxy.is_some(),
        }
    }

    /// The client of an integration's token fetches (see
    /// [`OwnClient::tokens`]).
    pub(crate) fn for_tokens(&self, own: Option<&OwnClient>) -> Client {
        match own.and_then(|o| o.tokens.as_ref()) {
            Some(http) => Client {
                http: http.clone(),
                policy: self.policy.clone(),
                proxied: true,
            },
            None => self.clone(),
        }
    }

    /// The client of `integration` when it needs its own (a `proxy`, a
    /// `tls`), with the URL to send to and the address it is pinned to
    /// (`tls.server_name`: the URL's host, an IP address, becomes the
    /// name, resolved to that address only).
    pub(crate) fn own_for(
        &self,
        integration: &alertpost_config::Integration,
    ) -> Result<(Option<OwnClient>, url::Url, Option<IpAddr>), String> {
        let mut url = integration.url.clone();
        if integration.proxy.is_none() && integration.tls.is_none() {
            return Ok((None, url, None));
        }
        // The proxy's own address is the operator's choice and is not held
        // to the policy; the target is (`check`).
        let route = match &integration.proxy {
            Some(proxy) => Some(
                reqwest::Proxy::all(proxy.url.expose())
                    .map_err(|_| format!("proxy {} is not a URL reqwest accepts", proxy.shown))?,
            ),
            None => None,
        };
        let base = || match &route {
            Some(route) => builder().no_proxy().proxy(route.clone()),
            None => builder().no_proxy().dns_resolver(Arc::new(PolicyResolver {
                policy: self.policy.clone(),
            })),
        };
        // Only an OAuth integration fetches tokens.
        let oauth = matches!(integration.auth, alertpost_config::Auth::OAuth2(_));
        let tokens = match &route {
            Some(_) if oauth => Some(
                base()
                    .build()
                    .map_err(|e| format!("cannot build its token client ({e})"))?,
            ),
            _ => None,
        };
        let mut b = base();
        let mut pinned = None;
        if let Some(tls) = &integration.tls {
            if let Some(pem) = &tls.ca_pem {
                let certs = reqwest::Certificate::from_pem_bundle(pem)
                    .map_err(|e| format!("tls.ca_file: {e}"))?;
                b = b.tls_certs_only(certs);
            }
            if let Some(identity) = &tls.identity_pem {
                let identity = reqwest::Identity::from_pem(identity.expose().as_bytes())
                    .map_err(|_| "tls.cert_file, tls.key_file: not a usable identity".to_owned())?;
                b = b.identity(identity);
            }
            if let Some(v) = tls.min_version {
                b = b.tls_version_min(match v {
                    alertpost_config::TlsVersion::V1_2 => reqwest::tls::Version::TLS_1_2,
                    alertpost_config::TlsVersion::V1_3 => reqwest::tls::Version::TLS_1_3,
                });
            }
            if let (Some(name), Some(ip)) = (&tls.server_name, host_ip(&url)) {
                let port = url.port_or_known_default().unwrap_or(443);
                url.set_host(Some(name))
                    .map_err(|e| format!("tls.server_name: {e}"))?;
                b = b.resolve(name, SocketAddr::new(ip, port));
                pinned = Some(ip);
            }
        }
        let http = b
            .build()
            .map_err(|e| format!("cannot build its HTTP client ({e})"))?;
        let own = OwnClient {
            http,
            proxy: integration.proxy.as_ref().map(|p| p.shown.clone()),
            tokens,
        };
        Ok((Some(own), url, pinned))
    }

    /// Whether `url` may be sent to: the policy on an IP literal, and on
    /// the address a `server_name` pins it to; through a proxy, also on
    /// every address its host resolves to here (the proxy connects to one
    /// of them, so none may be refused). A name that does not resolve here
    /// cannot be checked, so it is not sent: a connection failure, tried
    /// again like one.
    pub(crate) async fn check(
        &self,
        url: &url::Url,
        pinned: Option<IpAddr>,
    ) -> Result<(), Refusal> {
        self.permits_url(url).map_err(Refusal::Policy)?;
        if let Some(ip) = pinned {
            return if self.policy.permits(ip) {
                Ok(())
            } else {
                Err(Refusal::Policy(format!(
                    "{} is not a public address and is not in [policy] allow_networks",
                    alertpost_config::policy::canonical(ip)
                )))
            };
        }
        let (true, Some(url::Host::Domain(host))) = (self.proxied, url.host()) else {
            return Ok(());
        };
        let port = url.port_or_known_default().unwrap_or(80);
        let addrs: Vec<SocketAddr> = match tokio::net::lookup_host((host, port)).await {
            Ok(addrs) => addrs.collect(),
            Err(e) => {
                return Err(Refusal::Unresolved(format!(
                    "{host} does not resolve here ({e}), so the outbound policy cannot check it; not sent to the proxy"
                )));
            }
        };
        let refused: Vec<String> = addrs
            .iter()
            .filter(|a| !self.policy.permits(a.ip()))
            .map(|a| alertpost_config::policy::canonical(a.ip()).to_string())
            .collect();
        if refused.is_empty() && !addrs.is_empty() {
            Ok(())
        } else if refused.is_empty() {
            Err(Refusal::Unresolved(format!(
                "{host} resolves to no address here; not sent to the proxy"
            )))
        } else {
            Err(Refusal::Policy(format!(
                "{host} resolves to addresses the outbound policy refuses ({}); not sent to the proxy",
                refused.join(", ")
            )))
        }
    }

    /// For URLs whose host is an IP literal (which never reach the resolver):
    /// whether the policy permits it. Host names are checked at connect time.
    pub fn permits_url(&self, url: &url::Url) -> Result<(), String> {
        let ip = match url.host() {
            Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
            Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
            _ => return Ok(()),
        };
        if self.policy.permits(ip) {
            Ok(())
        } else {
            Err(format!(
                "{} is not a public address and is not in [policy] allow_networks",
                alertpost_config::policy::canonical(ip)
            ))
        }
    }
}

/// What every client of the worker shares: no redirects, no resends, the
/// connect bound, the pool, the user agent.
fn builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        // Retrying is alertpost's to decide (and to count); reqwest's own
        // resend of protocol-refused requests would also clone every
        // request to be able to.
        .retry(reqwest::retry::never())
        .connect_timeout(CONNECT_TIMEOUT)
        .pool_max_idle_per_host(IDLE_PER_HOST)
        .pool_idle_timeout(Duration::from_secs(60))
        .tcp_nodelay(true)
        .user_agent(crate::USER_AGENT)
}

fn host_ip(url: &url::Url) -> Option<IpAddr> {
    match url.host()? {
        url::Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
        url::Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
        url::Host::Domain(_) => None,
    }
}

/// Why a target is not sent to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The policy refuses it: a dead letter.
    Policy(String),
    /// It could not be checked (its name does not resolve here): tried
    /// again, like a connection that failed.
    Unresolved(String),
}

struct PolicyResolver {
    policy: Arc<Policy>,
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let (permitted, refused): (Vec<SocketAddr>, Vec<SocketAddr>) = resolved
                .into_iter()
                .partition(|addr| policy.permits(addr.ip()));
            if permitted.is_empty() {
                let addrs = refused
                    .iter()
                    .map(|a| alertpost_config::policy::canonical(a.ip()).to_string())
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(Box::new(PolicyRefused { host, addrs }) as _);
            }
            Ok(Box::new(permitted.into_iter()) as Addrs)
        })
    }
}
