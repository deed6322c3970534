//! RabbitMQ for `demo produce` and `demo consume`, through `idemq-rabbitmq`.
//!
//! The topic's work queue is `idemq-demo.TOPIC`, with the demo's retry policy as delay tiers
//! and a dead-letter queue beside it. Deliveries settle themselves on RabbitMQ: retries and
//! in-progress redeliveries wait in the tier queues, and a delivery dropped by a crashed
//! task is requeued at once. A consumer process that dies loses its connection, and the
//! broker redelivers whatever it had not acked.

use std::time::Duration;

use idemq_core::adapter::RetryPolicy;
use idemq_rabbitmq::{AmqpDelivery, Publisher, Receiver, Topology};

use super::{Broker, BrokerError, Outgoing, Received};
use crate::demo::Topic;

/// The demo's RabbitMQ: a publisher and a receiver on the topic's queue.
pub struct AmqpBroker {
    publisher: Publisher,
    receiver: Receiver,
}

fn broker_error(e: idemq_rabbitmq::AmqpError) -> BrokerError {
    BrokerError(Box::new(e))
}

impl AmqpBroker {
    /// Connects to `url` (`amqp://user:pass@host:port/vhost`) and declares the topic's
    /// queues; fails at once when RabbitMQ cannot be reached. Receiving starts with the
    /// first receive, or with [`AmqpBroker::start_receiving`].
    pub async fn connect(
        url: &str,
        topic: &Topic,
        retry: &RetryPolicy,
        prefetch: u16,
    ) -> Result<Self, BrokerError> {
        let queue = format!("idemq-demo.{}", topic.as_str());
        let topology = Topology::new(&queue, retry.clone()).map_err(broker_error)?;
        let publisher = Publisher::connect(url, &topology)
            .await
            .map_err(broker_error)?;
        let receiver = Receiver::new(url, topology).prefetch(prefetch);
        Ok(Self {
            publisher,
            receiver,
        })
    }

    /// Starts consuming the queue now, so a broker that went away is reported at once.
    pub async fn start_receiving(&self) -> Result<(), BrokerError> {
        self.receiver.open().await.map_err(broker_error)
    }
}

impl Broker for AmqpBroker {
    type Delivery = AmqpDelivery;

    /// Publishes with a broker confirm. RabbitMQ has no delayed first delivery without a
    /// plugin, so `delay` is not applied.
    async fn publish(&self, msg: Outgoing) -> Result<(), BrokerError> {
        let out = idemq_rabbitmq::Outgoing::new(msg.payload).key(msg.message_id);
        self.publisher
            .publish(out)
            .await
            .map(drop)
            .map_err(broker_error)
    }

    /// A lost connection reads as an idle wait: the next receive reconnects.
    async fn recv(&self, wait: Duration) -> Result<Received<AmqpDelivery>, BrokerError> {
        match self.receiver.recv(wait).await {
            Ok(Some(d)) => Ok(Received::Delivery(d)),
            Ok(None) => Ok(Received::Idle),
            Err(e) => {
                tracing::warn!(error = %e, "RabbitMQ receive failed; reconnecting");
                tokio::time::sleep(wait).await;
                Ok(Received::Idle)
            }
        }
    }
}
