//! Shared test helpers: the broker address, fresh names, a producer, and watching a topic.
#![allow(dead_code)]

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use idemq_kafka::rdkafka::consumer::{Consumer, StreamConsumer};
use idemq_kafka::rdkafka::message::OwnedMessage;
use idemq_kafka::rdkafka::{ClientConfig, Message};
use idemq_kafka::{admin, Producer};
use tokio::sync::Mutex;

/// The cluster under test: `IDEMQ_KAFKA_BOOTSTRAP`, else the local tansu
/// (`scripts/tansu start`).
pub fn bootstrap() -> String {
    std::env::var("IDEMQ_KAFKA_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// Fails clearly when nothing answers on the bootstrap address. Also turns on logs for
/// `RUST_LOG`.
pub async fn require_broker() {
    logs();
    let addr = bootstrap();
    if tokio::net::TcpStream::connect(&addr).await.is_err() {
        panic!("Kafka must be running for these tests (scripts/tansu start; or set IDEMQ_KAFKA_BOOTSTRAP): nothing answers on {addr}");
    }
}

/// Turns on logs for `RUST_LOG`.
pub fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// A name no other test uses.
pub fn fresh(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}-{}", &id[..12])
}

/// A producer shared by the test binary.
pub async fn producer() -> Producer {
    static PRODUCER: OnceLock<Producer> = OnceLock::new();
    require_broker().await;
    PRODUCER
        .get_or_init(|| Producer::new(&bootstrap()).expect("producer"))
        .clone()
}

/// A fresh topic with `partitions` partitions.
pub async fn topic(prefix: &str, partitions: i32) -> String {
    require_broker().await;
    let t = fresh(prefix);
    admin::create_topics(&bootstrap(), &[&t], partitions)
        .await
        .unwrap();
    t
}

/// Every record arriving on a topic, read by a consumer group of its own.
pub struct Watch {
    consumer: Mutex<StreamConsumer>,
}

impl Watch {
    /// Watches `topic`, creating it first if needed.
    pub async fn start(topic: &str) -> Self {
        require_broker().await;
        admin::create_topics(&bootstrap(), &[topic], 1)
            .await
            .unwrap();
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap())
            .set("group.id", fresh("watch"))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "true")
            .create()
            .unwrap();
        consumer.subscribe(&[topic]).unwrap();
        Self {
            consumer: Mutex::new(consumer),
        }
    }

    /// The next record; panics after `secs` seconds.
    pub async fn next(&self, secs: u64) -> OwnedMessage {
        let consumer = self.consumer.lock().await;
        tokio::time::timeout(Duration::from_secs(secs), consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("no record within {secs} s"))
            .expect("watch failed")
            .detach()
    }
}

/// Awaits `fut`; panics after `secs` seconds.
pub async fn within<T>(secs: u64, what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// The header `name` of `m` as text.
pub fn text(m: &OwnedMessage, name: &str) -> String {
    use idemq_kafka::rdkafka::message::Headers;
    m.headers()
        .and_then(|hs| hs.iter().find(|h| h.key == name).and_then(|h| h.value))
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default()
}
