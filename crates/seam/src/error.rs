//! What can go wrong on the seam. The seam names no backend: each backend
//! words its own errors (RabbitMQ's say RabbitMQ, the embedded queue's say
//! the embedded queue), so an operator reads what actually failed.

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// `to` names the backend and where it is, without secrets
    /// ("RabbitMQ at amqp://guest:***@127.0.0.1:5672/%2f").
    #[error("cannot connect to {to}: {reason}")]
    Connect { to: String, reason: String },
    #[error("cannot declare {what}: {reason}")]
    Declare { what: String, reason: String },
    /// What carries the messages broke (RabbitMQ: the connection or a
    /// channel; the embedded queue: its database).
    #[error("{backend}: {reason}")]
    Broken {
        backend: &'static str,
        reason: String,
    },
    #[error("{backend} did not answer within {secs}s ({what})")]
    Timeout {
        backend: &'static str,
        what: String,
        secs: u64,
    },
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum PublishError {
    /// Not confirmed: the backend could not be reached, a channel broke, no
    /// confirm came in time. The message may or may not be stored. The
    /// text says which backend and why.
    #[error("{0}")]
    Unavailable(String),
    /// The broker (it names itself) refused to take the message: a nack.
    #[error("{0} refused the message (a negative acknowledgement)")]
    Nacked(&'static str),
    /// No queue is bound for the message: it was returned, not stored.
    #[error(
        "no queue takes messages sent to `{0}` (is the topology declared? run `alertpost setup`)"
    )]
    Unroutable(String),
}
