//! The adapter conformance suite on a real RocketMQ name server and broker.

mod common;

use common::*;
use idemq_conformance::adapter::{Broker, DeadLettered, Lane};
use idemq_consumer::headers::{
    ATTEMPTS, ERROR, FIRST_FAILURE, LAST_FAILURE, ORIGINAL_QUEUE, REASON,
};
use idemq_consumer::Consumer;
use idemq_core::adapter::RetryPolicy;
use idemq_rocketmq::names::dead_letter_topic;
use idemq_rocketmq::{Listener, Outgoing, RmqSource};

/// The broker, consumed with one listener kind.
struct Rocket(Listener);

struct RocketLane {
    topic: String,
    group: String,
    policy: RetryPolicy,
    listener: Listener,
    dead: Watch,
}

impl Broker for Rocket {
    type Lane = RocketLane;

    async fn lane(&self, policy: RetryPolicy) -> RocketLane {
        let (topic, group) = (fresh("conf"), fresh("g"));
        producer().await.create_topic(&topic, 4).await.unwrap();
        let dead = Watch::start(&dead_letter_topic(&group)).await;
        RocketLane {
            topic,
            group,
            policy,
            listener: self.0,
            dead,
        }
    }
}

impl Lane for RocketLane {
    type Source = RmqSource;

    fn consumer(&self) -> Consumer<RmqSource> {
        RmqSource::new(&client(), &self.topic, &self.group, self.policy.clone())
            .unwrap()
            .listener(self.listener)
            .consumer()
    }

    async fn publish(&self, id: Option<&str>, payload: &[u8]) {
        // Every RocketMQ message gets a unique id (the client makes one when none is set, and
        // an empty one is dropped on the wire), so a producer with no usable id is emulated
        // with a blank one, which the delivery reads as none.
        let msg = Outgoing::new(&self.topic, payload.to_vec()).id(id.unwrap_or(" "));
        producer().await.send(msg).await.unwrap();
    }

    async fn dead_letter(&self) -> DeadLettered {
        let m = self.dead.next(60).await;
        let text = |name: &str| {
            m.properties()
                .get(name)
                .map(|v| v.to_string())
                .unwrap_or_default()
        };
        let int = |name: &str| text(name).parse::<i64>().unwrap_or_default();
        DeadLettered {
            message_id: Some(text("UNIQ_KEY")).filter(|id| !id.is_empty()),
            reason: text(REASON),
            error: text(ERROR),
            attempts: int(ATTEMPTS) as u32,
            original: text(ORIGINAL_QUEUE),
            first_failure: int(FIRST_FAILURE),
            last_failure: int(LAST_FAILURE),
        }
    }

    fn name(&self) -> String {
        self.topic.clone()
    }
}

mod concurrently {
    use super::*;

    idemq_conformance::adapter_conformance! {
        broker: async { Rocket(Listener::Concurrently) },
    }
}

/// The orderly listener, one message of a queue at a time: the suite's `ordered` rules.
/// tests/dedup.rs covers the orderly listener's queue order.
mod orderly {
    use super::*;

    idemq_conformance::adapter_conformance! {
        broker: async { Rocket(Listener::Orderly) },
        ordered,
    }
}
