//! The adapter conformance suite on a real RabbitMQ.

mod common;

use common::*;
use futures::lock::Mutex;
use idemq_conformance::adapter::{Broker, DeadLettered, Lane};
use idemq_consumer::Consumer;
use idemq_core::adapter::RetryPolicy;
use idemq_rabbitmq::headers::{
    self, ATTEMPTS, ERROR, FIRST_FAILURE, LAST_FAILURE, ORIGINAL_QUEUE, REASON,
};
use idemq_rabbitmq::lapin::options::BasicPublishOptions;
use idemq_rabbitmq::lapin::{BasicProperties, Channel, Connection, Consumer as RawConsumer};
use idemq_rabbitmq::{AmqpSource, Outgoing, Publisher, Topology};

struct Rabbit;

struct RabbitLane {
    topology: Topology,
    publisher: Publisher,
    channel: Channel,
    dlq: Mutex<RawConsumer>,
    _conn: Connection,
}

impl Broker for Rabbit {
    type Lane = RabbitLane;

    async fn lane(&self, policy: RetryPolicy) -> RabbitLane {
        let topology = fresh("conf", policy);
        let (conn, channel) = admin(&topology).await;
        let publisher = Publisher::on_channel(conn.create_channel().await.unwrap(), &topology)
            .await
            .unwrap();
        let dlq = watch(&channel, topology.dead_letter_queue()).await;
        RabbitLane {
            topology,
            publisher,
            channel,
            dlq: Mutex::new(dlq),
            _conn: conn,
        }
    }
}

impl Lane for RabbitLane {
    type Source = AmqpSource;

    fn consumer(&self) -> Consumer<AmqpSource> {
        AmqpSource::new(uri(), self.topology.clone()).consumer()
    }

    async fn publish(&self, id: Option<&str>, payload: &[u8]) {
        match id {
            Some(id) => {
                let msg = Outgoing::new(payload.to_vec()).key(id);
                self.publisher.publish(msg).await.unwrap();
            }
            // The publisher always stamps an id: a producer that forgot it publishes raw.
            None => {
                self.channel
                    .basic_publish(
                        self.topology.exchange().into(),
                        self.topology.queue().into(),
                        BasicPublishOptions::default(),
                        payload,
                        BasicProperties::default(),
                    )
                    .await
                    .unwrap()
                    .await
                    .unwrap();
            }
        }
    }

    async fn dead_letter(&self) -> DeadLettered {
        let d = next(&mut *self.dlq.lock().await).await;
        let h = d.properties.headers().as_ref();
        let text = |name| headers::text(h, name).unwrap_or_default().to_owned();
        let int = |name| headers::int(h, name).unwrap_or_default();
        DeadLettered {
            message_id: d.properties.message_id().as_ref().map(|m| m.to_string()),
            reason: text(REASON),
            error: text(ERROR),
            attempts: int(ATTEMPTS) as u32,
            original: text(ORIGINAL_QUEUE),
            first_failure: int(FIRST_FAILURE),
            last_failure: int(LAST_FAILURE),
        }
    }

    fn name(&self) -> String {
        self.topology.queue().to_owned()
    }
}

idemq_conformance::adapter_conformance! {
    broker: async { Rabbit },
}
