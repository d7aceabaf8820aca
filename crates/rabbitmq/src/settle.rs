//! Settling one message on the channel it came on: an ack, or a reject
//! that requeues it; and whether it is still ours (its channel is open).

use alertpost_seam::{BoxFuture, BrokerError, Held, Settler};
use lapin::options::{BasicAckOptions, BasicRejectOptions};

use crate::connection::{bounded, broken};

/// Settles one delivery on the channel it came on, whose status says
/// whether the delivery is still ours.
pub(crate) struct Acker(pub(crate) lapin::Acker, pub(crate) lapin::ChannelStatus);

impl Settler for Acker {
    fn ack(&self) -> BoxFuture<'_, Result<(), BrokerError>> {
        Box::pin(self.ack())
    }

    fn requeue(&self) -> BoxFuture<'_, Result<(), BrokerError>> {
        Box::pin(self.reject(true))
    }

    fn held(&self) -> Held {
        let status = self.1.clone();
        Held::new(move || status.connected())
    }
}

impl Acker {
    async fn ack(&self) -> Result<(), BrokerError> {
        let acked = bounded("an ack", async {
            self.0
                .ack(BasicAckOptions::default())
                .await
                .map_err(|e| broken(format!("connection lost: {e}")))
        });
        match acked.await {
            Ok(true) => Ok(()),
            Ok(false) => Err(broken(
                "ack on a closed channel (the message will be redelivered)".to_owned(),
            )),
            Err(e) => Err(e),
        }
    }

    /// `basic.reject`, not `basic.nack`: from RabbitMQ 4.3 only a reject counts
    /// toward a quorum queue's delivery limit, which ends poison loops
    /// (rabbitmq-server#15387).
    async fn reject(&self, requeue: bool) -> Result<(), BrokerError> {
        let rejected = bounded("a reject", async {
            self.0
                .reject(BasicRejectOptions { requeue })
                .await
                .map_err(|e| broken(format!("connection lost: {e}")))
        });
        match rejected.await {
            Ok(true) => Ok(()),
            Ok(false) => Err(broken(
                "reject on a closed channel (the message will be redelivered)".to_owned(),
            )),
            Err(e) => Err(e),
        }
    }
}
