//! Records per second drained from a filled topic: the idempotent consumer against a raw
//! rdkafka consumer doing the same work with commits, on the same cluster in the same run.
//!
//! - **raw**: a `StreamConsumer` in a fresh group that does the trivial work for each record
//!   (its value's length as a string) in offset order and commits the offset it is at every
//!   50 ms (and the last one);
//! - **idemq**: [`KafkaSource`] + [`idemq_consumer::run`] with [`RedisStore`], keyed by the
//!   record key, the handler doing the same work, in partition order (the default: one
//!   record of a partition at a time, as the raw consumer) and unordered (poll batches of
//!   up to 64 claimed with one `claim_batch`); settled offsets are committed every 50 ms.
//!
//! Each run drains a topic of its own ([`PARTITIONS`] partitions) filled before anything is
//! timed, to its last record settled. After a short warm-up of each, the rounds rotate
//! which side goes first. Two clusters:
//!
//! - **tansu** (`scripts/tansu start`), the real broker of the tests: a debug build whose
//!   fetches cost it milliseconds of CPU per record, so every consumer is bound by the
//!   broker there and the ratio says only that the dedup consumer keeps up with it. Timed
//!   from the consumer's creation: from the first record, the clock would start after one
//!   slow fetch or after all of them, by chance;
//! - **MockCluster**, librdkafka's in-process cluster, whose fetches are cheap: there the
//!   consumers themselves are the bound, and the ratio is the dedup consumer's cost. Timed
//!   from the first record: the mock's group join takes seconds, the same for both.
//!
//! It also prints the CPU each side cost per record in this process, the broker (tansu)
//! and Redis.
//!
//! `cargo bench -p idemq-kafka --bench consume`. Env: `IDEMQ_BENCH_N` (records per run on
//! tansu, default 2000; ten times as many on MockCluster), `IDEMQ_BENCH_ROUNDS` (default 3),
//! `IDEMQ_KAFKA_BOOTSTRAP` (default `127.0.0.1:9092`), `IDEMQ_REDIS_URL` (default
//! `redis://127.0.0.1:6379`).

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use idemq_conformance::bench::{
    count, cpu_ceiling, cpu_header, cpu_line, env, line, ratio_line, Cpu, Rates, Server,
};
use idemq_consumer::run;
use idemq_core::adapter::RetryPolicy;
use idemq_core::{Engine, EngineConfig, Message as _, Scope, Store};
use idemq_kafka::names::{dead_letter_topic, retry_topic};
use idemq_kafka::rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use idemq_kafka::rdkafka::mocking::MockCluster;
use idemq_kafka::rdkafka::producer::DefaultProducerContext;
use idemq_kafka::rdkafka::{ClientConfig, Message};
use idemq_kafka::{admin, keys, KafkaDelivery, KafkaSource, Ordering, Outgoing, Producer};
use idemq_redis::RedisStore;

/// Partitions per topic.
const PARTITIONS: i32 = 4;
/// Records per poll batch on the idempotent side.
const BATCH: usize = 64;
/// Sends in flight while filling a topic.
const SENDS_IN_FLIGHT: usize = 256;
/// How often the raw side commits, as idemq's default commit interval.
const COMMIT_EVERY: Duration = Duration::from_millis(50);

/// A cluster the sides drain topics of.
struct Cluster {
    name: &'static str,
    bootstrap: String,
    /// The servers metered: the broker, when it is a process of its own, and Redis.
    servers: &'static [Server],
    mock: Option<MockCluster<'static, DefaultProducerContext>>,
    /// Whether the clock starts at the first record rather than at the consumer's creation.
    from_first: bool,
}

impl Cluster {
    /// A fresh topic holding `n` records, each with its own key (and, on the mock cluster,
    /// the retry and dead-letter topics, which it cannot be asked to create).
    async fn filled(&self, producer: &Producer, n: usize) -> String {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let topic = format!("bench-{}", &id[..12]);
        match &self.mock {
            Some(mock) => {
                for t in [
                    topic.clone(),
                    retry_topic(&topic),
                    dead_letter_topic(&topic),
                ] {
                    mock.create_topic(&t, PARTITIONS, 1).unwrap();
                }
            }
            None => admin::create_topics(&self.bootstrap, &[&topic], PARTITIONS)
                .await
                .unwrap(),
        }
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
}

/// One side of the comparison.
#[derive(Clone, Copy)]
enum Side {
    Raw,
    Idemq(fn() -> Ordering),
}

const SIDES: [(&str, Side); 3] = [
    ("raw StreamConsumer, commits every 50 ms", Side::Raw),
    (
        "idemq, partition order (default)",
        Side::Idemq(Ordering::default),
    ),
    (
        "idemq, unordered, batches of 64",
        Side::Idemq(|| Ordering::Unordered),
    ),
];

fn group() -> String {
    format!("bench-{}", uuid::Uuid::new_v4().simple())
}

fn deadline(n: usize) -> Duration {
    Duration::from_secs(120 + n as u64 / 50)
}

async fn raw(cluster: &Cluster, topic: &str, n: usize) -> Duration {
    let mut start = Instant::now();
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &cluster.bootstrap)
        .set("group.id", group())
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut last_commit = Instant::now();
    for i in 0..n {
        let m = consumer.recv().await.unwrap();
        if i == 0 && cluster.from_first {
            start = Instant::now();
        }
        std::hint::black_box(m.payload().map_or(0, <[u8]>::len).to_string());
        // As idemq does: commit what is done, at most every 50 ms, and at the end.
        if last_commit.elapsed() >= COMMIT_EVERY || i + 1 == n {
            consumer.commit_message(&m, CommitMode::Async).unwrap();
            last_commit = Instant::now();
        }
    }
    start.elapsed()
}

async fn idempotent(
    cluster: &Cluster,
    store: &RedisStore,
    ordering: Ordering,
    topic: &str,
    n: usize,
) -> Duration {
    let scope = Scope::new(format!("bench/kafka/{}", uuid::Uuid::new_v4().simple())).unwrap();
    let engine = Engine::new(
        store.clone(),
        EngineConfig::new(scope.clone()),
        keys::record_key(),
    );
    let mut start = Instant::now();
    let consumer = KafkaSource::new(&cluster.bootstrap, topic, group(), RetryPolicy::default())
        .unwrap()
        .batch(BATCH)
        .ordering(ordering)
        .create_topics(cluster.mock.is_none())
        .consumer()
        .concurrency(4)
        .spawn(run(engine, |d: &KafkaDelivery| {
            let len = d.payload().len();
            async move { Ok::<_, String>(len.to_string()) }
        }));
    let stats = consumer.stats().clone();
    if cluster.from_first {
        stats.wait_until(|s| s.received.get() > 0).await;
        start = Instant::now();
    }
    stats.wait_until(|s| s.processed.get() >= n as u64).await;
    let took = start.elapsed();
    consumer.shutdown().await;
    store.purge(&scope).await.unwrap();
    took
}

/// Drains `topic` with `side`, answering the time and the CPU it cost.
async fn drain(
    cluster: &Cluster,
    store: &RedisStore,
    side: Side,
    topic: &str,
    n: usize,
) -> (Duration, Cpu) {
    let cpu = Cpu::now(cluster.servers);
    let run = async {
        match side {
            Side::Raw => raw(cluster, topic, n).await,
            Side::Idemq(ordering) => idempotent(cluster, store, ordering(), topic, n).await,
        }
    };
    let took = tokio::time::timeout(deadline(n), run)
        .await
        .unwrap_or_else(|_| panic!("a run on {} {topic} stalled", cluster.name));
    (took, Cpu::now(cluster.servers).since(&cpu))
}

async fn compare(cluster: &Cluster, store: &RedisStore, n: usize, rounds: usize) {
    let producer = Producer::new(&cluster.bootstrap).unwrap();
    let fill_started = Instant::now();
    let warm_n = (n / 10).max(1);
    let mut warm = Vec::new();
    for _ in SIDES {
        warm.push(cluster.filled(&producer, warm_n).await);
    }
    // Per round, a topic per side.
    let mut topics = Vec::new();
    for _ in 0..rounds {
        let mut round = Vec::new();
        for _ in SIDES {
            round.push(cluster.filled(&producer, n).await);
        }
        topics.push(round);
    }
    println!(
        "{}: {PARTITIONS} partitions; {rounds} rounds draining {n} records each after a \
         warm-up (topics filled in {:.1} s, untimed)",
        cluster.name,
        fill_started.elapsed().as_secs_f64()
    );
    for ((_, side), topic) in SIDES.iter().zip(&warm) {
        drain(cluster, store, *side, topic, warm_n).await;
    }
    let mut rates = vec![Rates::default(); SIDES.len()];
    let mut cpu = vec![Cpu::default(); SIDES.len()];
    for (r, round_topics) in topics.iter().enumerate() {
        let mut round = vec![0.0; SIDES.len()];
        for k in 0..SIDES.len() {
            let s = (r + k) % SIDES.len();
            let (took, used) = drain(cluster, store, SIDES[s].1, &round_topics[s], n).await;
            round[s] = rates[s].push(n, took);
            cpu[s].add(&used);
        }
        println!(
            "  round {}: raw {:>7.0}, partition order {:>7.0} ({:.2}), unordered {:>7.0} ({:.2}) records/s",
            r + 1,
            round[0],
            round[1],
            round[1] / round[0],
            round[2],
            round[2] / round[0],
        );
    }
    println!(
        "  {:<46} {:>8} {:>8} {:>8}",
        "records/s", "min", "median", "max"
    );
    for ((name, _), rates) in SIDES.iter().zip(&rates) {
        line(name, rates);
    }
    ratio_line("ratio partition order / raw", &rates[1], &rates[0]);
    ratio_line("ratio unordered / raw", &rates[2], &rates[0]);
    cpu_header("CPU µs per record", cluster.servers);
    for ((name, _), cpu) in SIDES.iter().zip(&cpu) {
        cpu_line(name, cpu, n * rounds);
    }
    println!(
        "  {:<46} {:>8.2}",
        "CPU-bound ceiling of the unordered ratio",
        cpu_ceiling(&cpu[0], &cpu[2])
    );
}

#[tokio::main]
async fn main() {
    let n = count("IDEMQ_BENCH_N", 2_000).max(1);
    let rounds = count("IDEMQ_BENCH_ROUNDS", 3).max(1);
    let redis = RedisStore::connect(&env("IDEMQ_REDIS_URL", "redis://127.0.0.1:6379"))
        .await
        .unwrap_or_else(|e| panic!("Redis must be running for this benchmark: {e}"));
    let bootstrap = env("IDEMQ_KAFKA_BOOTSTRAP", "127.0.0.1:9092");
    if tokio::net::TcpStream::connect(&bootstrap).await.is_err() {
        panic!(
            "Kafka must be running for this benchmark (scripts/tansu start; or set \
             IDEMQ_KAFKA_BOOTSTRAP): nothing answers on {bootstrap}"
        );
    }
    let tansu = Cluster {
        name: "tansu (debug build, SQLite)",
        bootstrap,
        servers: &[("tansu", "tansu"), ("redis", "redis-server")],
        mock: None,
        from_first: false,
    };
    compare(&tansu, &redis, n, rounds).await;
    let mock = MockCluster::new(1).expect("a mock cluster");
    let mock = Cluster {
        name: "MockCluster (in-process)",
        bootstrap: mock.bootstrap_servers(),
        servers: &[("redis", "redis-server")],
        mock: Some(mock),
        from_first: true,
    };
    compare(&mock, &redis, n * 10, rounds).await;
}
