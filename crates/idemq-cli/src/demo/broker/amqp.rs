//! RabbitMQ for `demo produce` and `demo consume`, through `idemq-rabbitmq`.
//!
//! The topic's work queue is `idemq-demo.TOPIC`, with the demo's retry policy as delay tiers
//! and a dead-letter queue beside it. Deliveries settle themselves on RabbitMQ: retries and
//! in-progress redeliveries wait in the tier queues, and a delivery dropped by a crashed
//! task is requeued at once. A consumer process that dies loses its connection, and the
//! broker redelivers whatever it had not acked.

use idemq_core::adapter::RetryPolicy;
use idemq_rabbitmq::{AmqpSource, Publisher, Topology};

use super::{Broker, BrokerError, Outgoing};
use crate::demo::Topic;

/// The demo's RabbitMQ: a publisher, and sources for consumers of the topic's queue.
pub struct AmqpBroker {
    publisher: Publisher,
    url: String,
    topology: Topology,
    prefetch: u16,
}

fn broker_error(e: idemq_rabbitmq::AmqpError) -> BrokerError {
    BrokerError(Box::new(e))
}

impl AmqpBroker {
    /// Connects to `url` (`amqp://user:pass@host:port/vhost`) and declares the topic's
    /// queues; fails at once when RabbitMQ cannot be reached.
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
        Ok(Self {
            publisher,
            url: url.to_owned(),
            topology,
            prefetch,
        })
    }
}

impl Broker for AmqpBroker {
    type Source = AmqpSource;

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

    fn source(&self) -> AmqpSource {
        AmqpSource::new(self.url.clone(), self.topology.clone()).prefetch(self.prefetch)
    }
}
