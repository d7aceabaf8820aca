//! The broker seam and its RabbitMQ backend: the only crate that speaks AMQP.
//!
//! Layout:
//! - [`topology`]: queue and exchange names for a prefix, the delay tiers,
//!   and how each queue is declared (quorum, TTL, dead lettering);
//! - [`seam`]: what a worker sees of a broker, whichever it is: the
//!   [`Backend`], [`Session`] and [`Stream`] traits, an [`Inbound`] message
//!   and how it is settled, an [`Outgoing`] message and its
//!   [`Destination`], and the errors;
//! - [`rabbit`]: RabbitMQ over lapin: [`Broker`] (connection and
//!   declaration), [`Publisher`] (confirm channel), [`Consumer`] (manual acks
//!   under a prefetch window), for the producer and the tools too;
//! - [`session`]: RabbitMQ as the worker's backend ([`Rabbit`]).
//!
//! No lapin type appears in this crate's public API, so a second backend
//! (the embedded queue of `alertpost run`) can stand behind the same traits.

pub mod rabbit;
pub mod seam;
pub mod session;
pub mod topology;

pub use rabbit::{Broker, Consumer, GetChannel, Pending, Publisher, QueueStats};
pub use seam::{
    Backend, BrokerError, Destination, Inbound, Outgoing, PublishError, Session, Source, Stream,
};
pub use session::{Rabbit, RabbitSession};
pub use topology::{Topology, TopologyError};

/// The default AMQP URL (the local broker, guest account, default vhost).
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// Hides the password of an AMQP URL, for logs and errors. Everything up
/// to the last `@` counts as user info: a password with a raw `/`, `?` or
/// `@` in it (an invalid URL, but one a user may write) stays hidden, at the
/// price of hiding too much of a URL with an `@` in its path.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.rsplit_once('@') {
        Some((userinfo, host_and_path)) => {
            let user = userinfo.split([':', '/', '?', '#']).next().unwrap_or("");
            format!("{scheme}://{user}:***@{host_and_path}")
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
        assert_eq!(
            super::redact_url("amqp://u:pa/ss?x@h:5672/%2f"),
            "amqp://u:***@h:5672/%2f"
        );
    }
}
