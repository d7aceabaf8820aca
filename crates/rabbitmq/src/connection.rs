//! One AMQP connection to RabbitMQ ([`Broker`]): to the first of a list of
//! URLs that answers, tried in turn from a random one; RabbitMQ's
//! `connection.blocked` watched; channels opened on it; every wait bounded.
//! lapin's automatic recovery is not used: a lost connection ends every
//! stream with an error and the owner (the worker's supervisor, the
//! producer) reconnects from scratch, which is simpler to reason about than
//! half-recovered channels: every unacked message simply goes back to its
//! queue.

use std::sync::Arc;
use std::time::Duration;

use alertpost_seam::{BrokerError, Topology};
use futures_util::StreamExt;
use lapin::types::LongString;
use lapin::{Channel, Connection, ConnectionProperties};

use crate::urls::{amqp_urls, redact_url, rotation};

/// The backend's name in errors and logs.
pub const RABBITMQ: &str = "RabbitMQ";

/// How long connecting to one URL may take before it counts as a failure.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The bound on every other wait on RabbitMQ (declaring, opening a
/// channel, consuming, settling, closing), and the default one on a
/// publish's confirm (`Publisher::with_timeout`).
pub const BROKER_TIMEOUT: Duration = Duration::from_secs(10);

/// One connection to RabbitMQ.
pub struct Broker {
    pub(crate) conn: Connection,
    pub(crate) topology: Arc<Topology>,
    pub(crate) blocked: tokio::sync::watch::Receiver<Option<String>>,
}

/// The AMQP heartbeat asked for when a URL names none (RabbitMQ's own is
/// 60 s): a peer frozen or cut off is closed within about twice this, so a
/// frozen worker's shards pass to another in tens of seconds, not minutes.
pub const HEARTBEAT_SECS: u16 = 10;

/// `url` with [`HEARTBEAT_SECS`] as its heartbeat, unless it names one.
fn with_heartbeat(url: &str) -> String {
    if url.contains("heartbeat=") {
        return url.to_owned();
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}heartbeat={HEARTBEAT_SECS}")
}

async fn connect_one(url: &str, name: &str) -> Result<Connection, String> {
    let props =
        ConnectionProperties::default().with_connection_name(LongString::from(name.to_owned()));
    let url = &with_heartbeat(url);
    match tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect(url, props)).await {
        Ok(Ok(conn)) => Ok(conn),
        // The parser's errors may quote the URL whole, password and all.
        Ok(Err(e)) => Err(e.to_string().replace(url, &redact_url(url))),
        Err(_) => Err(format!("no answer within {}s", CONNECT_TIMEOUT.as_secs())),
    }
}

/// `fut`, or a [`BrokerError::Timeout`] naming `what` after [`BROKER_TIMEOUT`].
pub(crate) async fn bounded<T>(
    what: &str,
    fut: impl std::future::Future<Output = Result<T, BrokerError>>,
) -> Result<T, BrokerError> {
    match tokio::time::timeout(BROKER_TIMEOUT, fut).await {
        Ok(result) => result,
        Err(_) => Err(BrokerError::Timeout {
            backend: RABBITMQ,
            what: what.to_owned(),
            secs: BROKER_TIMEOUT.as_secs(),
        }),
    }
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("prefix", &self.topology.prefix())
            .field("connected", &self.is_connected())
            .finish()
    }
}

impl Broker {
    /// Connects to the first of `urls` (one AMQP URL, or several separated
    /// by commas: a cluster's nodes) that answers, trying them in turn from
    /// a random one; `name` shows in RabbitMQ's management UI and logs.
    pub async fn connect(
        urls: &str,
        name: &str,
        topology: Topology,
    ) -> Result<Broker, BrokerError> {
        let list = amqp_urls(urls);
        let mut failures = Vec::new();
        for i in rotation(list.len()) {
            let url = list[i];
            match connect_one(url, name).await {
                Ok(conn) => {
                    if !failures.is_empty() {
                        tracing::info!(url = %redact_url(url), "connected to another node");
                    }
                    return Ok(Broker::on(conn, topology));
                }
                Err(reason) => failures.push(format!("{}: {reason}", redact_url(url))),
            }
        }
        Err(BrokerError::Connect {
            to: format!("{RABBITMQ} at {}", redact_url(urls)),
            reason: if failures.is_empty() {
                "no URL given".to_owned()
            } else {
                failures.join("; ")
            },
        })
    }

    fn on(conn: Connection, topology: Topology) -> Broker {
        // RabbitMQ's connection.blocked / unblocked, as they come.
        let (tx, blocked) = tokio::sync::watch::channel(None::<String>);
        let mut events = conn.events_listener();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tx.closed() => break,
                    event = events.next() => match event {
                        Some(lapin::Event::ConnectionBlocked(reason)) => {
                            tracing::warn!(%reason, "RabbitMQ blocks this connection's publishes");
                            tx.send_replace(Some(reason));
                        }
                        Some(lapin::Event::ConnectionUnblocked) => {
                            tracing::info!("RabbitMQ unblocked this connection");
                            tx.send_replace(None);
                        }
                        Some(_) => {}
                        None => break,
                    },
                }
            }
        });
        Broker {
            conn,
            topology: Arc::new(topology),
            blocked,
        }
    }

    /// Why RabbitMQ blocks this connection's publishes (a memory or disk
    /// alarm), if it does.
    pub fn blocked(&self) -> Option<String> {
        self.blocked.borrow().clone()
    }

    /// Changes of [`Broker::blocked`].
    pub fn blocked_changes(&self) -> tokio::sync::watch::Receiver<Option<String>> {
        self.blocked.clone()
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    pub fn is_connected(&self) -> bool {
        self.conn.status().connected()
    }

    /// Bounded: a blocked connection may never get its close out, and is
    /// then dropped.
    pub async fn close(&self) {
        let _ = tokio::time::timeout(BROKER_TIMEOUT, self.conn.close(200, "bye".into())).await;
    }

    pub(crate) async fn channel(&self, what: &str) -> Result<Channel, BrokerError> {
        bounded(&format!("opening a {what} channel"), async {
            self.conn
                .create_channel()
                .await
                .map_err(|e| broken(format!("opening a {what} channel: {e}")))
        })
        .await
    }
}

/// A connection or channel that broke, in RabbitMQ's words.
pub(crate) fn broken(reason: impl std::fmt::Display) -> BrokerError {
    BrokerError::Broken {
        backend: RABBITMQ,
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_gets_a_heartbeat_unless_it_names_one() {
        assert_eq!(
            with_heartbeat("amqp://u:p@h:5672/%2f"),
            "amqp://u:p@h:5672/%2f?heartbeat=10"
        );
        assert_eq!(
            with_heartbeat("amqp://h/%2f?frame_max=8192"),
            "amqp://h/%2f?frame_max=8192&heartbeat=10"
        );
        assert_eq!(
            with_heartbeat("amqp://h/%2f?heartbeat=30"),
            "amqp://h/%2f?heartbeat=30"
        );
    }
}
