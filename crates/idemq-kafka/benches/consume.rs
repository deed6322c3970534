//! Records per second consumed from Kafka (tansu): the idempotent consumer against a raw
//! rdkafka consumer doing the same work with commits, on the same broker in the same run.
//!
//! - **raw**: a `StreamConsumer` in a fresh group that does the trivial work for each record
//!   (its value's length as a string) and commits the offset of the record it is at every
//!   50 ms (and the last one);
//! - **idemq**: [`KafkaSource`] + [`idemq_consumer::run`] with [`RedisStore`], keyed by the
//!   record key, the handler doing the same work: each poll batch is claimed with one
//!   `claim_batch`, and settled offsets are committed every 50 ms.
//!
//! Each side reads a topic of its own ([`PARTITIONS`] partitions) filled before anything is
//! timed; after a short warm-up of each, the rounds alternate which side goes first. A run
//! is timed from its first record to its last settled one. It also prints the CPU each side
//! cost per record in this process, the broker and Redis.
//!
//! `cargo bench -p idemq-kafka --bench consume`. Env: `IDEMQ_BENCH_N` (records per run,
//! default 5000), `IDEMQ_BENCH_ROUNDS` (default 3), `IDEMQ_KAFKA_BOOTSTRAP` (default
//! `127.0.0.1:9092`), `IDEMQ_REDIS_URL` (default `redis://127.0.0.1:6379`).

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use idemq_conformance::bench::{
    count, cpu_ceiling, cpu_header, cpu_line, env, line, ratio_line, Cpu, Rates, Server,
};
use idemq_consumer::run;
use idemq_core::adapter::RetryPolicy;
use idemq_core::{Engine, EngineConfig, Message as _, Scope, Store};
use idemq_kafka::rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use idemq_kafka::rdkafka::{ClientConfig, Message};
use idemq_kafka::{admin, keys, KafkaDelivery, KafkaSource, Outgoing, Producer};
use idemq_redis::RedisStore;

/// Partitions per topic.
const PARTITIONS: i32 = 4;
/// Records per poll batch, and handler tasks, on the idempotent side.
const BATCH: usize = 64;
/// Sends in flight while filling a topic.
const SENDS_IN_FLIGHT: usize = 256;
/// How often the raw side commits, as idemq's default commit interval.
const COMMIT_EVERY: Duration = Duration::from_millis(50);
/// The servers metered.
const SERVERS: &[Server] = &[("tansu", "tansu"), ("redis", "redis-server")];

fn bootstrap() -> String {
    env("IDEMQ_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
}

fn fresh(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}-{}", &id[..12])
}

fn deadline(n: usize) -> Duration {
    Duration::from_secs(60 + n as u64 / 100)
}

/// A fresh topic holding `n` records, each with its own key.
async fn filled(producer: &Producer, kind: &str, n: usize) -> String {
    let topic = fresh(&format!("bench-{kind}"));
    admin::create_topics(&bootstrap(), &[&topic], PARTITIONS)
        .await
        .unwrap();
    futures::stream::iter(0..n)
        .map(|k| {
            let key = format!("order-{k}");
            producer.send(Outgoing::new(&topic, key.clone()).key(key))
        })
        .buffer_unordered(SENDS_IN_FLIGHT)
        .try_for_each(|_| async { Ok(()) })
        .await
        .unwrap();
    topic
}

async fn raw(topic: &str, n: usize) -> (Duration, Cpu) {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", fresh("raw"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    tokio::time::timeout(deadline(n), async {
        let first = consumer.recv().await.unwrap();
        let (start, cpu) = (Instant::now(), Cpu::now(SERVERS));
        std::hint::black_box(first.payload().map_or(0, <[u8]>::len).to_string());
        drop(first);
        let mut last_commit = Instant::now();
        for i in 1..n {
            let m = consumer.recv().await.unwrap();
            std::hint::black_box(m.payload().map_or(0, <[u8]>::len).to_string());
            // As idemq does: commit what is done, at most every 50 ms, and at the end.
            if last_commit.elapsed() >= COMMIT_EVERY || i + 1 == n {
                consumer.commit_message(&m, CommitMode::Async).unwrap();
                last_commit = Instant::now();
            }
        }
        (start.elapsed(), Cpu::now(SERVERS).since(&cpu))
    })
    .await
    .unwrap_or_else(|_| panic!("raw run on {topic} stalled"))
}

async fn idempotent(store: &RedisStore, scope: &Scope, topic: &str, n: usize) -> (Duration, Cpu) {
    let engine = Engine::new(
        store.clone(),
        EngineConfig::new(scope.clone()),
        keys::record_key(),
    );
    let consumer = KafkaSource::new(bootstrap(), topic, fresh("idem"), RetryPolicy::default())
        .unwrap()
        .batch(BATCH)
        .consumer()
        .concurrency(4)
        .spawn(run(engine, |d: &KafkaDelivery| {
            let len = d.payload().len();
            async move { Ok::<_, String>(len.to_string()) }
        }));
    let stats = consumer.stats().clone();
    let timed = tokio::time::timeout(deadline(n), async {
        stats.wait_until(|s| s.received.get() > 0).await;
        let (start, cpu) = (Instant::now(), Cpu::now(SERVERS));
        stats.wait_until(|s| s.processed.get() >= n as u64).await;
        (start.elapsed(), Cpu::now(SERVERS).since(&cpu))
    })
    .await;
    consumer.shutdown().await;
    let took = timed.unwrap_or_else(|_| {
        panic!(
            "idempotent run on {topic} stalled: {} received, {} processed of {n}",
            stats.received.get(),
            stats.processed.get()
        )
    });
    store.purge(scope).await.unwrap();
    took
}

#[tokio::main]
async fn main() {
    let n = count("IDEMQ_BENCH_N", 5_000).max(1);
    let rounds = count("IDEMQ_BENCH_ROUNDS", 3).max(1);
    let warm_n = (n / 10).max(1);
    let redis = RedisStore::connect(&env("IDEMQ_REDIS_URL", "redis://127.0.0.1:6379"))
        .await
        .unwrap_or_else(|e| panic!("Redis must be running for this benchmark: {e}"));
    let scope = Scope::new("bench/kafka").unwrap();
    redis.purge(&scope).await.unwrap();
    if tokio::net::TcpStream::connect(bootstrap()).await.is_err() {
        panic!(
            "Kafka must be running for this benchmark (scripts/tansu start; or set \
             IDEMQ_KAFKA_BOOTSTRAP): nothing answers on {}",
            bootstrap()
        );
    }
    let producer = Producer::new(&bootstrap()).unwrap();
    let fill_started = Instant::now();
    let warm = (
        filled(&producer, "warm-raw", warm_n).await,
        filled(&producer, "warm-idem", warm_n).await,
    );
    let mut lanes = Vec::new();
    for _ in 0..rounds {
        lanes.push((
            filled(&producer, "raw", n).await,
            filled(&producer, "idem", n).await,
        ));
    }
    println!(
        "Kafka (tansu) consume, {PARTITIONS} partitions; {rounds} rounds of {n} records after a \
         warm-up (topics filled in {:.1} s, untimed)",
        fill_started.elapsed().as_secs_f64()
    );
    raw(&warm.0, warm_n).await;
    idempotent(&redis, &scope, &warm.1, warm_n).await;
    let (mut raw_rates, mut idem_rates) = (Rates::default(), Rates::default());
    let (mut raw_cpu, mut idem_cpu) = (Cpu::default(), Cpu::default());
    for (r, (raw_topic, idem_topic)) in lanes.iter().enumerate() {
        let ((raw_took, raw_used), (idem_took, idem_used));
        if r % 2 == 0 {
            (raw_took, raw_used) = raw(raw_topic, n).await;
            (idem_took, idem_used) = idempotent(&redis, &scope, idem_topic, n).await;
        } else {
            (idem_took, idem_used) = idempotent(&redis, &scope, idem_topic, n).await;
            (raw_took, raw_used) = raw(raw_topic, n).await;
        }
        raw_cpu.add(&raw_used);
        idem_cpu.add(&idem_used);
        let (raw_rate, idem_rate) = (raw_rates.push(n, raw_took), idem_rates.push(n, idem_took));
        println!(
            "  round {}: raw {raw_rate:>7.0} records/s, idemq {idem_rate:>7.0} records/s, ratio {:.2}",
            r + 1,
            idem_rate / raw_rate
        );
    }
    println!(
        "  {:<46} {:>8} {:>8} {:>8}",
        "records/s", "min", "median", "max"
    );
    line("raw StreamConsumer, commits every 50 ms", &raw_rates);
    line("idemq: KafkaSource + run, RedisStore", &idem_rates);
    ratio_line("ratio idemq/raw (per round)", &idem_rates, &raw_rates);
    cpu_header("CPU µs per record (timed windows)", SERVERS);
    cpu_line("raw StreamConsumer", &raw_cpu, n * rounds);
    cpu_line("idemq", &idem_cpu, n * rounds);
    println!(
        "  {:<46} {:>8.2}",
        "CPU-bound ceiling of the ratio",
        cpu_ceiling(&raw_cpu, &idem_cpu)
    );
}
