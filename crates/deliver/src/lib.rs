//! One HTTP attempt and its verdict. Knows nothing of AMQP or the store.
//!
//! Layout, in the order an attempt goes through them:
//! - [`request`]: an integration made ready once ([`Endpoint`]) and the
//!   request of one attempt: method, URL, headers (the Standard Webhooks
//!   ids and signature, alertpost's own, the integration's, auth), body;
//! - [`sign`]: Standard Webhooks signatures;
//! - [`oauth`]: OAuth 2 client-credentials tokens, cached per integration;
//! - [`client`]: the shared HTTP client: connection pool, no redirects, no
//!   proxy, and a resolver that enforces the outbound policy on every
//!   address it hands out;
//! - [`exchange`]: one attempt's exchange ([`Exchange`]): auth, send once,
//!   what came back ([`Answer`]: status, headers, the start of the body) or
//!   how it failed;
//! - [`classify`]: the one table that turns an attempt into a [`Verdict`].

pub mod classify;
pub mod client;
pub mod exchange;
pub mod oauth;
pub mod request;
pub mod sign;

pub use classify::{Verdict, classify};
pub use client::Client;
pub use exchange::{Answer, Exchange, Response};
pub use request::{Endpoint, Request, RequestMeta};

/// `alertpost/<version>`, the user agent of every request.
pub const USER_AGENT: &str = concat!("alertpost/", env!("CARGO_PKG_VERSION"));
