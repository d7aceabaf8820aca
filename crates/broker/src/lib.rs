//! The broker seam and its RabbitMQ backend: the only crate that speaks AMQP.
//!
//! Layout:
//! - [`topology`]: queue and exchange names for a prefix, the delay tiers,
//!   and how each queue is declared (quorum, TTL, dead lettering);
//! - [`seam`]: what the rest of alertpost sees of a broker: an [`Inbound`]
//!   message with its [`Acker`], an [`Outgoing`] message and its
//!   [`Destination`], and the errors;
//! - [`rabbit`]: the RabbitMQ backend: [`Broker`] (connection and
//!   declaration), [`Publisher`] (confirm channel), [`Consumer`] (manual acks
//!   under a prefetch window).
//!
//! No lapin type appears in this crate's public API, so a second backend
//! (the embedded queue of `alertpost run`) can stand behind the same types.

pub mod rabbit;
pub mod seam;
pub mod topology;

pub use rabbit::{Broker, Consumer, GetChannel, Pending, Publisher, QueueStats};
pub use seam::{Acker, BrokerError, Destination, Inbound, Outgoing, PublishError};
pub use topology::{Topology, TopologyError};

/// The default AMQP URL (the local broker, guest account, default vhost).
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// Hides the password of an AMQP URL, for logs and errors.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{host}{path}")
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_passwords() {
        assert_eq!(
            super::redact_url("amqp://guest:guest@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(super::redact_url("amqp://h/v"), "amqp://h/v");
        assert_eq!(super::redact_url("amqps://u:p@ss@h"), "amqps://u:***@h");
    }
}
