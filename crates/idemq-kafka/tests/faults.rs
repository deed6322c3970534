//! Fault injection on rdkafka's `MockCluster` (librdkafka's in-process Kafka cluster with
//! error injection): offset commits that fail, and the broker down while consuming. The
//! real-broker tests are in `conformance.rs` and `group.rs`.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::within;
use idemq_consumer::{run, ConsumerHandle};
use idemq_core::adapter::RetryPolicy;
use idemq_core::store::MemoryStore;
use idemq_core::{Engine, EngineConfig, Message, Scope};
use idemq_kafka::names::{dead_letter_topic, retry_topic};
use idemq_kafka::rdkafka::mocking::MockCluster;
use idemq_kafka::rdkafka::producer::DefaultProducerContext;
use idemq_kafka::rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use idemq_kafka::{keys, KafkaDelivery, KafkaSource, Outgoing, Producer};

/// How many times the handler ran per payload.
#[derive(Clone, Default)]
struct Runs(Arc<Mutex<HashMap<String, u32>>>);

impl Runs {
    fn of(&self, key: &str) -> u32 {
        self.0.lock().unwrap().get(key).copied().unwrap_or(0)
    }
}

fn policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 5,
        initial_interval: Duration::from_millis(50),
        multiplier: 2.0,
        max_interval: Duration::from_millis(500),
        redeliver_after: Duration::from_millis(50),
    }
}

struct Mock {
    cluster: MockCluster<'static, DefaultProducerContext>,
    topic: String,
    group: String,
    store: Arc<MemoryStore>,
    scope: Scope,
}

impl Mock {
    fn new() -> Self {
        common::logs();
        let cluster = MockCluster::new(1).expect("a mock cluster");
        let topic = common::fresh("mock");
        cluster.create_topic(&topic, 2, 1).unwrap();
        // The mock cluster answers no CreateTopics: the source's topics are made here.
        cluster.create_topic(&retry_topic(&topic), 2, 1).unwrap();
        cluster
            .create_topic(&dead_letter_topic(&topic), 1, 1)
            .unwrap();
        Self {
            cluster,
            topic,
            group: common::fresh("g"),
            store: Arc::new(MemoryStore::new()),
            scope: Scope::new(format!("kafka-mock/{}", uuid::Uuid::new_v4().simple())).unwrap(),
        }
    }

    fn consumer(&self) -> (ConsumerHandle, Runs) {
        let engine = Engine::new(
            self.store.clone(),
            EngineConfig::new(self.scope.clone()),
            keys::record_key(),
        );
        let runs = Runs::default();
        let r = runs.clone();
        let h = KafkaSource::new(
            self.cluster.bootstrap_servers(),
            &self.topic,
            &self.group,
            policy(),
        )
        .unwrap()
        .create_topics(false)
        .consumer()
        .spawn(run(engine, move |d: &KafkaDelivery| {
            *r.0.lock()
                .unwrap()
                .entry(String::from_utf8_lossy(d.payload()).into_owned())
                .or_default() += 1;
            async { Ok::<_, String>(()) }
        }));
        (h, runs)
    }

    async fn send(&self, keys: impl IntoIterator<Item = String>) {
        let producer = Producer::new(&self.cluster.bootstrap_servers()).unwrap();
        for k in keys {
            producer
                .send(Outgoing::new(&self.topic, k.clone()).key(k))
                .await
                .unwrap();
        }
    }
}

/// Every offset commit fails while a consumer works through ten records, so the group has
/// nothing committed when it stops; the next consumer of the group reads all ten again, and
/// the store makes each a duplicate: every record applied once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_commits_replay_records_and_the_store_absorbs_them() {
    let mock = Mock::new();
    let keys: Vec<String> = (0..10).map(|i| format!("order-{i}")).collect();
    mock.send(keys.clone()).await;
    mock.cluster.request_errors(
        RDKafkaApiKey::OffsetCommit,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_COORDINATOR; 64],
    );
    let (first, runs) = mock.consumer();
    within(
        60,
        "the first consumer",
        first.stats().wait_until(|s| s.processed.get() == 10),
    )
    .await;
    first.shutdown().await;
    mock.cluster
        .clear_request_errors(RDKafkaApiKey::OffsetCommit);

    let (second, again) = mock.consumer();
    within(
        60,
        "the replay",
        second.stats().wait_until(|s| s.duplicates.get() >= 1),
    )
    .await;
    mock.send(["order-last".to_string()]).await;
    within(
        60,
        "a new record after the replay",
        second.stats().wait_until(|s| s.processed.get() == 1),
    )
    .await;
    second.shutdown().await;
    for k in &keys {
        assert_eq!(runs.of(k), 1, "{k} applied once by the first consumer");
        assert_eq!(again.of(k), 0, "{k} not applied again");
    }
    assert_eq!(again.of("order-last"), 1);
}

/// The broker goes down while records arrive and comes back: nothing is lost, nothing is
/// applied twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_down_while_consuming_loses_nothing() {
    let mock = Mock::new();
    let (h, runs) = mock.consumer();
    mock.send((0..5).map(|i| format!("before-{i}"))).await;
    within(
        60,
        "the first records",
        h.stats().wait_until(|s| s.processed.get() == 5),
    )
    .await;
    mock.cluster.broker_down(1).unwrap();
    let producer = Producer::new(&mock.cluster.bootstrap_servers()).unwrap();
    let topic = mock.topic.clone();
    // Sends wait (librdkafka retries) until the broker is back.
    let sending = tokio::spawn(async move {
        for i in 0..5 {
            let k = format!("during-{i}");
            producer
                .send(Outgoing::new(&topic, k.clone()).key(k))
                .await
                .unwrap();
        }
    });
    tokio::time::sleep(Duration::from_secs(2)).await; // the outage lasts a while
    mock.cluster.broker_up(1).unwrap();
    within(60, "the sends", sending).await.unwrap();
    within(
        60,
        "the records sent during the outage",
        h.stats().wait_until(|s| s.processed.get() == 10),
    )
    .await;
    h.shutdown().await;
    for i in 0..5 {
        assert_eq!(runs.of(&format!("before-{i}")), 1);
        assert_eq!(runs.of(&format!("during-{i}")), 1);
    }
}
