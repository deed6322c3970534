//! The adapter conformance suite on a real Kafka-protocol broker (tansu, `scripts/tansu`),
//! for each way a session orders its records and retries them.

mod common;

use common::*;
use idemq_conformance::adapter::{Broker, DeadLettered, Lane};
use idemq_consumer::headers::{
    ATTEMPTS, ERROR, FIRST_FAILURE, LAST_FAILURE, ORIGINAL_QUEUE, REASON,
};
use idemq_consumer::Consumer;
use idemq_core::adapter::RetryPolicy;
use idemq_kafka::names::dead_letter_topic;
use idemq_kafka::{KafkaSource, Ordering, Outgoing, Retries, MESSAGE_ID};

struct Kafka(fn() -> Ordering, Retries);

struct KafkaLane {
    topic: String,
    group: String,
    policy: RetryPolicy,
    dead: Watch,
    ordering: Ordering,
    retries: Retries,
}

impl Broker for Kafka {
    type Lane = KafkaLane;

    async fn lane(&self, policy: RetryPolicy) -> KafkaLane {
        let topic = topic("conf", 4).await;
        let dead = Watch::start(&dead_letter_topic(&topic)).await;
        KafkaLane {
            group: fresh("g"),
            topic,
            policy,
            dead,
            ordering: (self.0)(),
            retries: self.1,
        }
    }
}

impl Lane for KafkaLane {
    type Source = KafkaSource;

    fn consumer(&self) -> Consumer<KafkaSource> {
        KafkaSource::new(bootstrap(), &self.topic, &self.group, self.policy.clone())
            .unwrap()
            .ordering(self.ordering.clone())
            .retries(self.retries)
            .consumer()
    }

    async fn publish(&self, id: Option<&str>, payload: &[u8]) {
        // The producer always stamps an id; a blank one is read as none.
        let msg = Outgoing::new(&self.topic, payload.to_vec()).id(id.unwrap_or(" "));
        producer().await.send(msg).await.unwrap();
    }

    async fn dead_letter(&self) -> DeadLettered {
        let m = self.dead.next(60).await;
        let int = |name: &str| text(&m, name).parse::<i64>().unwrap_or_default();
        DeadLettered {
            message_id: Some(text(&m, MESSAGE_ID)).filter(|id| !id.trim().is_empty()),
            reason: text(&m, REASON),
            error: text(&m, ERROR),
            attempts: int(ATTEMPTS) as u32,
            original: text(&m, ORIGINAL_QUEUE),
            first_failure: int(FIRST_FAILURE),
            last_failure: int(LAST_FAILURE),
        }
    }

    fn name(&self) -> String {
        self.topic.clone()
    }
}

mod unordered {
    use super::*;

    idemq_conformance::adapter_conformance! {
        broker: async { Kafka(|| Ordering::Unordered, Retries::Topic) },
    }
}

mod in_place {
    use super::*;

    idemq_conformance::adapter_conformance! {
        broker: async { Kafka(|| Ordering::Unordered, Retries::InPlace) },
    }
}

/// The default, one record of a partition at a time: the suite's `ordered` rules.
/// tests/ordering.rs covers the order itself.
mod by_partition {
    use super::*;

    idemq_conformance::adapter_conformance! {
        broker: async { Kafka(Ordering::default, Retries::Topic) },
        ordered,
    }
}
