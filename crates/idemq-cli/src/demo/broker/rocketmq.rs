//! RocketMQ for `demo produce` and `demo consume`, through `idemq-rocketmq`.
//!
//! The topic is `idemq-demo-TOPIC` (dots become underscores: RocketMQ names allow none),
//! consumed by the group `idemq-demo-TOPIC-stock`, so every consumer process shares the
//! topic's queues. Retries wait at the broker's delay levels on the group's retry topic, and
//! dead letters land on `%DLQ%idemq-demo-TOPIC-stock`. A consumer process that dies drops its
//! connection: the broker gives its queues to the others, which resume from the last
//! committed offsets, and the engine makes whatever comes back a duplicate.

use idemq_core::adapter::RetryPolicy;
use idemq_rocketmq::transaction::{TxConfig, TxProducer};
use idemq_rocketmq::{Client, Producer, RmqError, RmqSource};
use idemq_sql::TxLog;

use super::{Broker, BrokerError, Outgoing};
use crate::demo::Topic;

/// Queues of the demo topic: several consumer processes can share it.
const QUEUES: u32 = 8;

/// The demo's RocketMQ: a producer, and sources for consumers of the topic.
pub struct RocketBroker {
    client: Client,
    producer: Producer,
    topic: String,
    group: String,
    retry: RetryPolicy,
    batch: u32,
}

fn broker_error(e: RmqError) -> BrokerError {
    BrokerError(Box::new(e))
}

impl RocketBroker {
    /// Connects to the name server of `url` (`rocketmq://HOST:PORT`) and creates the topic;
    /// fails at once when RocketMQ cannot be reached.
    pub async fn connect(
        url: &str,
        topic: &Topic,
        retry: &RetryPolicy,
        batch: u32,
    ) -> Result<Self, BrokerError> {
        let name_server = url.trim_start_matches("rocketmq://").trim_end_matches('/');
        let name = Self::topic_name(topic);
        let group = format!("{name}-stock");
        let client = Client::new(name_server).map_err(broker_error)?;
        let producer = Producer::start(&client, &format!("{name}-producer"))
            .await
            .map_err(broker_error)?;
        producer
            .create_topic(&name, QUEUES)
            .await
            .map_err(broker_error)?;
        Ok(Self {
            client,
            producer,
            topic: name,
            group,
            retry: retry.clone(),
            batch,
        })
    }
}

impl RocketBroker {
    /// The RocketMQ topic of a demo topic: `idemq-demo-TOPIC`, dots as underscores.
    pub fn topic_name(topic: &Topic) -> String {
        format!("idemq-demo-{}", topic.as_str().replace('.', "_"))
    }

    /// Starts the transactional producer of the topic (group `idemq-demo-TOPIC-tx`), its
    /// local transactions and check-backs on `log`.
    pub async fn tx_producer<L: TxLog>(
        &self,
        log: L,
        config: TxConfig,
    ) -> Result<TxProducer<L>, BrokerError> {
        TxProducer::start(
            &self.client,
            &format!("{}-tx", self.topic),
            &[&self.topic],
            log,
            config,
        )
        .await
        .map_err(broker_error)
    }

    /// Stops the producer and the client runtime (consumers stop with their runtime).
    pub async fn shutdown(&self) {
        self.producer.shutdown().await;
        self.client.shutdown().await;
    }
}

impl Broker for RocketBroker {
    type Source = RmqSource;

    /// Sends and waits until the broker stored it; `delay` becomes the broker's next delay
    /// level.
    async fn publish(&self, msg: Outgoing) -> Result<(), BrokerError> {
        let out = idemq_rocketmq::Outgoing::new(&self.topic, msg.payload)
            .id(msg.message_id)
            .delay(msg.delay);
        self.producer
            .send(out)
            .await
            .map(drop)
            .map_err(broker_error)
    }

    fn source(&self) -> RmqSource {
        RmqSource::new(&self.client, &self.topic, &self.group, self.retry.clone())
            .expect("names checked when the topic was created")
            .batch(self.batch)
    }
}
