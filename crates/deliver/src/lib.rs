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
//! - [`attempt`]: one attempt: auth, send, capture what came back (status,
//!   headers, the start of the body) or how it failed;
//! - [`classify`]: the one table that turns an attempt into a [`Verdict`].

pub mod attempt;
pub mod classify;
pub mod client;
pub mod oauth;
pub mod request;
pub mod sign;

pub use attempt::{Attempt, AttemptResult, Response};
pub use classify::{Verdict, classify};
pub use client::Client;
pub use request::{Endpoint, Request, RequestMeta};

/// `alertpost/<version>`, the user agent of every request.
pub const USER_AGENT: &str = concat!("alertpost/", env!("CARGO_PKG_VERSION"));
