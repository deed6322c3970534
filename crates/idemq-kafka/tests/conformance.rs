//! The adapter conformance suite on a real Kafka-protocol broker (tansu, `scripts/tansu`).

mod common;

use common::*;
use idemq_conformance::adapter::{Broker, DeadLettered, Lane};
use idemq_consumer::headers::{
    ATTEMPTS, ERROR, FIRST_FAILURE, LAST_FAILURE, ORIGINAL_QUEUE, REASON,
};
use idemq_consumer::Consumer;
use idemq_core::adapter::RetryPolicy;
use idemq_kafka::names::dead_letter_topic;
use idemq_kafka::{KafkaSource, Outgoing, MESSAGE_ID};

struct Kafka;

struct KafkaLane {
    topic: String,
    group: String,
    policy: RetryPolicy,
    dead: Watch,
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
        }
    }
}

impl Lane for KafkaLane {
    type Source = KafkaSource;

    fn consumer(&self) -> Consumer<KafkaSource> {
        KafkaSource::new(bootstrap(), &self.topic, &self.group, self.policy.clone())
            .unwrap()
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

idemq_conformance::adapter_conformance! {
    broker: async { Kafka },
}
