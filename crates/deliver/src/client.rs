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

/// The shared client. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Client {
    pub(crate) http: reqwest::Client,
    pub(crate) policy: Arc<Policy>,
    /// `http` sends through a proxy: the proxy resolves the target, so
    /// the target is resolved and checked here first ([`Client::check`]).
    pub(crate) proxied: bool,
}

/// The error a connection attempt fails with when the policy refused every
/// address of the host; [`crate::attempt`] finds it in the error chain.
#[derive(Debug, thiserror::Error)]
#[error("{host} resolves only to addresses the outbound policy refuses ({addrs})")]
pub(crate) struct PolicyRefused {
    pub host: String,
    pub addrs: String,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client: {0}")]
pub struct ClientError(String);

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

    /// This client's policy with `http` (an integration's proxied client).
    pub(crate) fn through(&self, http: &reqwest::Client) -> Client {
        Client {
            http: http.clone(),
            policy: self.policy.clone(),
            proxied: true,
        }
    }

    /// Whether `url` may be sent to: the policy on an IP literal; through a
    /// proxy, also on every address its host resolves to (the proxy
    /// connects to one of them, so none may be refused). A name that does
    /// not resolve here is left to the proxy, which may know it.
    pub(crate) async fn check(&self, url: &url::Url) -> Result<(), String> {
        self.permits_url(url)?;
        let (true, Some(url::Host::Domain(host))) = (self.proxied, url.host()) else {
            return Ok(());
        };
        let port = url.port_or_known_default().unwrap_or(80);
        let Ok(addrs) = tokio::net::lookup_host((host, port)).await else {
            return Ok(());
        };
        let refused: Vec<String> = addrs
            .filter(|a| !self.policy.permits(a.ip()))
            .map(|a| alertpost_config::policy::canonical(a.ip()).to_string())
            .collect();
        if refused.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{host} resolves to addresses the outbound policy refuses ({}); not sent to the proxy",
                refused.join(", ")
            ))
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

/// A client sending everything through `proxy` (HTTPS targets through
/// CONNECT). The proxy's own address is the operator's choice and is not
/// held to the outbound policy; the target is ([`Client::check`]).
pub(crate) fn proxied(proxy: &alertpost_config::Proxy) -> Result<reqwest::Client, String> {
    // reqwest's errors may repeat the URL: only the shown form is told.
    let route = reqwest::Proxy::all(proxy.url.expose())
        .map_err(|_| format!("{} is not a proxy URL reqwest accepts", proxy.shown))?;
    builder()
        .no_proxy()
        .proxy(route)
        .build()
        .map_err(|_| format!("cannot build a client for {}", proxy.shown))
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
