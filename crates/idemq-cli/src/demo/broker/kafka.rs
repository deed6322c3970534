//! Kafka for `demo produce` and `demo consume`, through `idemq-kafka`.
//!
//! The topic is `idemq-demo-TOPIC` with 8 partitions, consumed by the group
//! `idemq-demo-TOPIC-stock`, so every consumer process takes a share of the partitions.
//! Retries wait on `idemq-demo-TOPIC.idemq-retry`, dead letters land on
//! `idemq-demo-TOPIC.idemq-dlt`. A consumer process that dies leaves the group after its
//! session timeout; its partitions go to the others, which resume from the last committed
//! offsets (never past an unsettled record), and the engine makes whatever comes back a
//! duplicate.

use idemq_core::adapter::RetryPolicy;
use idemq_kafka::{admin, KafkaError, KafkaSource, Producer};

use super::{Broker, BrokerError, Outgoing};
use crate::demo::Topic;

/// Partitions of the demo topic: several consumer processes can share it.
const PARTITIONS: i32 = 8;

/// The demo's Kafka: a producer, and sources for consumers of the topic.
pub struct KafkaBroker {
    bootstrap: String,
    producer: Producer,
    topic: String,
    group: String,
    retry: RetryPolicy,
    batch: usize,
}

fn broker_error(e: KafkaError) -> BrokerError {
    BrokerError(Box::new(e))
}

impl KafkaBroker {
    /// Connects to the cluster of `url` (`kafka://HOST:PORT`) and creates the topic.
    pub async fn connect(
        url: &str,
        topic: &Topic,
        retry: &RetryPolicy,
        batch: usize,
    ) -> Result<Self, BrokerError> {
        let bootstrap = url.trim_start_matches("kafka://").trim_end_matches('/');
        let name = format!("idemq-demo-{}", topic.as_str());
        admin::create_topics(bootstrap, &[&name], PARTITIONS)
            .await
            .map_err(broker_error)?;
        Ok(Self {
            bootstrap: bootstrap.to_owned(),
            producer: Producer::new(bootstrap).map_err(broker_error)?,
            group: format!("{name}-stock"),
            topic: name,
            retry: retry.clone(),
            batch,
        })
    }
}

impl Broker for KafkaBroker {
    type Source = KafkaSource;

    /// Sends and waits until the broker stored it; Kafka has no delayed delivery, so a
    /// delayed duplicate goes at once.
    async fn publish(&self, msg: Outgoing) -> Result<(), BrokerError> {
        let out = idemq_kafka::Outgoing::new(&self.topic, msg.payload).id(msg.message_id);
        self.producer
            .send(out)
            .await
            .map(drop)
            .map_err(broker_error)
    }

    fn source(&self) -> KafkaSource {
        KafkaSource::new(
            &self.bootstrap,
            &self.topic,
            &self.group,
            self.retry.clone(),
        )
        .expect("names checked when the topic was created")
        .batch(self.batch)
    }
}
