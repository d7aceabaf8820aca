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
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            // Retrying is alertpost's to decide (and to count); reqwest's own
            // resend of protocol-refused requests would also clone every
            // request to be able to.
            .retry(reqwest::retry::never())
            .no_proxy()
            .connect_timeout(CONNECT_TIMEOUT)
            .pool_max_idle_per_host(IDLE_PER_HOST)
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .user_agent(crate::USER_AGENT)
            .dns_resolver(Arc::new(PolicyResolver {
                policy: policy.clone(),
            }))
            .build()
            .map_err(|e| ClientError(e.to_string()))?;
        Ok(Client { http, policy })
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
