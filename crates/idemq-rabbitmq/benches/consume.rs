//! Messages per second consumed and acked: a raw lapin consumer against the idempotent
//! consumer with the Redis store, on the same broker in the same run.
//!
//! `cargo bench -p idemq-rabbitmq --bench consume` (set `IDEMQ_BENCH_N` to change the
//! message count, `IDEMQ_AMQP_URL` the broker, `IDEMQ_REDIS_URL` the store).

use std::time::{Duration, Instant};

use futures::StreamExt;
use idemq_consumer::run;
use idemq_core::adapter::RetryPolicy;
use idemq_core::{Engine, EngineConfig, KeyStrategy, Scope, Store};
use idemq_rabbitmq::lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use idemq_rabbitmq::lapin::types::FieldTable;
use idemq_rabbitmq::{connect, AmqpDelivery, AmqpSource, Outgoing, Publisher, Topology};

const PREFETCH: u16 = 256;
const CONCURRENCY: usize = 64;

fn uri() -> String {
    std::env::var("IDEMQ_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

fn topology(kind: &str) -> Topology {
    let id = uuid::Uuid::new_v4().simple().to_string();
    Topology::new(
        &format!("bench-{kind}-{}", &id[..8]),
        RetryPolicy::default(),
    )
    .unwrap()
}

async fn fill(topology: &Topology, n: usize) {
    let publisher = Publisher::connect(&uri(), topology)
        .await
        .unwrap_or_else(|e| panic!("RabbitMQ must be running for this benchmark: {e}"));
    let mut i = 0;
    while i < n {
        let batch = (i..(i + 1000).min(n)).map(|k| Outgoing::new(format!("order-{k}")));
        i += batch.len();
        publisher.publish_all(batch).await.unwrap();
    }
}

async fn raw(topology: &Topology, n: usize) -> Duration {
    let conn = connect(&uri(), "idemq-bench-raw").await.unwrap();
    let channel = conn.create_channel().await.unwrap();
    channel
        .basic_qos(PREFETCH, BasicQosOptions::default())
        .await
        .unwrap();
    let start = Instant::now();
    let mut deliveries = channel
        .basic_consume(
            topology.queue().into(),
            "raw".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    // Acks run as concurrent tasks, like the idempotent consumer's handlers, so the two
    // differ only by the engine.
    let mut acks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let d = deliveries.next().await.unwrap().unwrap();
        while acks.len() >= CONCURRENCY {
            acks.join_next().await.unwrap().unwrap();
        }
        acks.spawn(async move { d.ack(BasicAckOptions::default()).await.unwrap() });
    }
    while let Some(done) = acks.join_next().await {
        done.unwrap();
    }
    let took = start.elapsed();
    topology.delete(&channel).await.unwrap();
    took
}

async fn idempotent(topology: &Topology, n: usize, store: impl Store) -> Duration {
    let engine = Engine::new(
        store,
        EngineConfig::new(Scope::new("bench/amqp").unwrap()),
        KeyStrategy::MessageId,
    );
    let start = Instant::now();
    let consumer = AmqpSource::new(uri(), topology.clone())
        .prefetch(PREFETCH)
        .consumer()
        .concurrency(CONCURRENCY)
        .spawn(run(engine, |d: &AmqpDelivery| {
            let len = d.data().len();
            async move { Ok::<_, String>(len.to_string()) }
        }));
    consumer.stats().wait_until(|s| s.acked() >= n as u64).await;
    let took = start.elapsed();
    consumer.shutdown().await;
    let conn = connect(&uri(), "idemq-bench-cleanup").await.unwrap();
    topology
        .delete(&conn.create_channel().await.unwrap())
        .await
        .unwrap();
    took
}

fn rate(n: usize, took: Duration) -> f64 {
    n as f64 / took.as_secs_f64()
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("IDEMQ_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    // Every queue is filled before anything is timed, and a short raw run warms the broker
    // up, so neither side pays for the other's publishing.
    let (warm, raw_q, idem_q) = (topology("warm"), topology("raw"), topology("idem"));
    fill(&warm, n / 10).await;
    fill(&raw_q, n).await;
    fill(&idem_q, n).await;
    raw(&warm, n / 10).await;
    let redis_url =
        std::env::var("IDEMQ_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let store = idemq_redis::RedisStore::connect(&redis_url)
        .await
        .unwrap_or_else(|e| panic!("Redis must be running for this benchmark: {e}"));
    let scope = Scope::new("bench/amqp").unwrap();
    store.purge(&scope).await.unwrap();
    let raw = rate(n, raw(&raw_q, n).await);
    let idem = rate(n, idempotent(&idem_q, n, store).await);
    println!("messages: {n}, prefetch {PREFETCH}, concurrency {CONCURRENCY}");
    println!("raw lapin consumer:               {raw:>10.0} msgs/s");
    println!("idempotent consumer (Redis store): {idem:>10.0} msgs/s");
    println!("ratio idempotent/raw:             {:>10.2}", idem / raw);
}
