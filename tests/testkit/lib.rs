//! Helpers for alertpost's end-to-end tests: real RabbitMQ, real HTTP.
//!
//! - [`receiver`]: an HTTP server on 127.0.0.1:0 that records every request
//!   and answers from a script (status, headers, body, delay);
//! - [`prefix`]: a topology prefix of a test's own, whose queues are deleted
//!   when it is dropped, so tests run in parallel without touching each other;
//! - [`worker`]: a worker in this process, stopped through its shutdown future;
//! - [`bin`]: the `alertpost` binary, for what must be a real process
//!   (exit codes, signals, a crash);
//! - [`proxy`]: a TCP proxy in front of RabbitMQ that a test can cut;
//! - [`http_proxy`]: a forward HTTP proxy that records what goes through it;
//! - [`tls`]: a test CA's certificates and an HTTPS receiver that can require
//!   client certificates;
//! - [`rabbitmq`]: the local node's faults (an alarm, a stopped app, closed
//!   connections), each undone when its guard drops;
//! - [`metrics`]: a worker's `/metrics` read, and [`eventually`] to wait on
//!   a condition instead of a clock.
//!
//! What they do not model: slow networks, HTTP/2, CONNECT.

pub mod bin;
pub mod http_proxy;
pub mod metrics;
pub mod prefix;
pub mod proxy;
pub mod rabbitmq;
pub mod receiver;
pub mod tls;
pub mod worker;

pub use metrics::eventually;
pub use prefix::TestPrefix;
pub use receiver::{Received, Receiver, Reply};
pub use worker::{Backend, RunningWorker};

/// The RabbitMQ the tests use: `ALERTPOST_AMQP_URL`, else the local default.
pub fn amqp_url() -> String {
    std::env::var("ALERTPOST_AMQP_URL")
        .unwrap_or_else(|_| alertpost_rabbitmq::DEFAULT_AMQP_URL.to_owned())
}

/// The ingest on 127.0.0.1:0, publishing to `url` (one URL or a list) with
/// `topology`, until the test's runtime ends; its address.
pub async fn start_ingest(url: &str, topology: alertpost_seam::Topology) -> std::net::SocketAddr {
    start_ingest_with(url, topology, alertpost_config::IngestSettings::default()).await
}

/// [`start_ingest`] with `settings` (tokens, the request bound).
pub async fn start_ingest_with(
    url: &str,
    topology: alertpost_seam::Topology,
    settings: alertpost_config::IngestSettings,
) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("the ingest can listen");
    let addr = listener.local_addr().expect("bound");
    let producer = alertpost_producer::Producer::lazy(url, topology, "test-ingest");
    tokio::spawn(alertpost_ingest::serve(
        listener,
        producer,
        settings,
        std::future::pending(),
    ));
    addr
}
