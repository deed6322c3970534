//! Messages per second consumed from RocketMQ: the dedup consumer against a raw push
//! consumer doing the same work, on the same broker in the same run.
//!
//! - **raw**: a `DefaultMQPushConsumer` whose concurrent listener does the trivial work for
//!   each message (its body length as a string) and returns `ConsumeSuccess`;
//! - **idemq**: [`RmqSource`] + [`idemq_consumer::run`] with [`RedisStore`], keyed by the
//!   producer's unique id ([`keys::unique_id`]), the handler doing the same work: each
//!   listener call is one batch, claimed with one `claim_batch` and completed with one
//!   `complete_batch`.
//!
//! Both sides take [`BATCH`] messages per listener call (`consume_message_batch_max_size`)
//! from a topic of [`QUEUES`] queues, with [`LISTENER_CALLS`] listener calls at once; the
//! idempotent runtime runs as many handler tasks, so each call's batch has a task.
//!
//! Every topic (a fresh one per side per round, each with a fresh consumer group) is filled
//! before anything is timed, one message per send with [`SENDS_IN_FLIGHT`] sends at once:
//! not in batches, since every message of one `send_batch` comes back from the 1.0.0 client
//! and broker with the same unique id (`UNIQ_KEY`), which would make them one key. After
//! one short warm-up run of each side, the rounds run with raw and idempotent alternating
//! which goes first, so drift on a shared machine hits both. A run is timed from its first
//! delivery to its last settled message. The records are removed afterwards; the topics
//! stay on the broker (`scripts/rocketmq start --fresh` drops them with its data).
//!
//! It also prints the CPU each side cost per message over its timed windows, in this
//! process, the broker and name server, and Redis: on a machine whose cores they share, the
//! ratio cannot exceed raw CPU over idempotent CPU, whatever the consumer does.
//!
//! `cargo bench -p idemq-rocketmq --bench consume`. Env: `IDEMQ_BENCH_N` (messages per run,
//! default 5000), `IDEMQ_BENCH_ROUNDS` (default 3), `IDEMQ_ROCKETMQ_NAMESRV` (default
//! `127.0.0.1:9876`), `IDEMQ_REDIS_URL` (default `redis://127.0.0.1:6379`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use idemq_conformance::bench::{
    count, cpu_ceiling, cpu_header, cpu_line, env, line, ratio_line, Cpu, Rates, Server,
};
use idemq_consumer::run;
use idemq_core::adapter::RetryPolicy;
use idemq_core::{Engine, EngineConfig, Scope, Store};
use idemq_redis::RedisStore;
use idemq_rocketmq::rocketmq_client_rust::{
    ClientConfig, ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus, DefaultMQPushConsumer,
    MQPushConsumer,
};
use idemq_rocketmq::rocketmq_model::common::consumer::consume_from_where::ConsumeFromWhere;
use idemq_rocketmq::rocketmq_model::common::message::message_ext::MessageExt;
use idemq_rocketmq::{keys, Client, Outgoing, Producer, RmqDelivery, RmqSource};
use tokio::sync::watch;

/// Queues per topic.
const QUEUES: u32 = 4;
/// Messages per listener call on both sides (`consume_message_batch_max_size`).
const BATCH: u32 = 16;
/// Listener calls at once on both sides: the client's default `consume_thread_min` (the
/// permits of its concurrent consume service), which [`RmqSource`] keeps. The idempotent
/// runtime gets as many handler tasks.
const LISTENER_CALLS: u32 = 20;
/// Sends in flight while filling a topic.
const SENDS_IN_FLIGHT: usize = 64;

fn name_server() -> String {
    env("IDEMQ_ROCKETMQ_NAMESRV", "127.0.0.1:9876")
}

fn fresh(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}-{}", &id[..12])
}

/// How long a run may take before the bench gives up on it.
fn deadline(n: usize) -> Duration {
    Duration::from_secs(60 + n as u64 / 100)
}

/// One run's topic, filled before anything is timed, and the consumer group that reads it.
struct Lane {
    topic: String,
    group: String,
    n: usize,
}

impl Lane {
    /// A fresh topic of [`QUEUES`] queues holding `n` messages, each with its own key.
    async fn filled(producer: &Producer, kind: &str, n: usize) -> Self {
        let lane = Self {
            topic: fresh(&format!("bench-{kind}")),
            group: fresh(&format!("bench-{kind}")),
            n,
        };
        producer.create_topic(&lane.topic, QUEUES).await.unwrap();
        futures::stream::iter(0..n)
            .map(|k| {
                let key = format!("order-{k}");
                producer.send(Outgoing::new(&lane.topic, key.clone()).key(key))
            })
            .buffer_unordered(SENDS_IN_FLIGHT)
            .try_for_each(|_| async { Ok(()) })
            .await
            .unwrap();
        lane
    }
}

/// How far a raw run is: messages handed to the listener, and messages it returned
/// `ConsumeSuccess` for.
#[derive(Default, Clone, Copy)]
struct Progress {
    received: usize,
    done: usize,
}

/// The raw consumer: a push consumer whose listener does the work for each message of its
/// call and succeeds. Times the first delivery to the `n`th message done, and meters the CPU
/// spent meanwhile.
async fn raw(client: &Client, lane: &Lane) -> (Duration, Cpu) {
    let (tx, mut rx) = watch::channel(Progress::default());
    // As `Client` configures the adapter's consumers.
    let config = ClientConfig {
        namesrv_addr: Some(client.name_server().to_string().into()),
        instance_name: fresh("raw").into(),
        vip_channel_enabled: false,
        heartbeat_broker_interval: 10_000,
        ..Default::default()
    };
    let mut consumer = DefaultMQPushConsumer::builder(client.runtime())
        .client_config(config)
        .consumer_group(lane.group.clone())
        .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
        .consume_message_batch_max_size(BATCH)
        .consume_thread_min(LISTENER_CALLS)
        .await_termination_millis_when_shutdown(5_000)
        .build();
    consumer.subscribe(lane.topic.as_str(), "*").await.unwrap();
    consumer.register_message_listener_concurrently(
        move |msgs: &[&MessageExt], _: &ConsumeConcurrentlyContext| {
            tx.send_modify(|p| p.received += msgs.len());
            for m in msgs {
                std::hint::black_box(m.message_inner().body_slice().len().to_string());
            }
            tx.send_modify(|p| p.done += msgs.len());
            Ok(ConsumeConcurrentlyStatus::ConsumeSuccess)
        },
    );
    consumer.start().await.unwrap();
    let n = lane.n;
    let timed = tokio::time::timeout(deadline(n), async {
        rx.wait_for(|p| p.received > 0).await.unwrap();
        let (start, cpu) = (Instant::now(), Cpu::now(SERVERS));
        rx.wait_for(|p| p.done >= n).await.unwrap();
        (start.elapsed(), Cpu::now(SERVERS).since(&cpu))
    })
    .await;
    consumer.shutdown().await;
    timed.unwrap_or_else(|_| {
        let p = *rx.borrow();
        panic!(
            "raw run on {} stalled: {} received, {} done of {n}",
            lane.topic, p.received, p.done
        )
    })
}

/// The idempotent consumer with the Redis store and the trivial handler. Times its first
/// delivery to its `n`th processed (and settled) message, and meters the CPU spent
/// meanwhile; removes its records.
async fn idempotent(
    client: &Client,
    store: &RedisStore,
    scope: &Scope,
    lane: &Lane,
) -> (Duration, Cpu) {
    let engine = Engine::new(
        store.clone(),
        EngineConfig::new(scope.clone()),
        keys::unique_id(),
    );
    let consumer = RmqSource::new(client, &lane.topic, &lane.group, RetryPolicy::default())
        .unwrap()
        .batch(BATCH)
        .consumer()
        .concurrency(LISTENER_CALLS as usize)
        .spawn(run(engine, |d: &RmqDelivery| {
            let len = d.body().len();
            async move { Ok::<_, String>(len.to_string()) }
        }));
    let stats = consumer.stats().clone();
    let n = lane.n as u64;
    let timed = tokio::time::timeout(deadline(lane.n), async {
        stats.wait_until(|s| s.received.get() > 0).await;
        let (start, cpu) = (Instant::now(), Cpu::now(SERVERS));
        stats.wait_until(|s| s.processed.get() >= n).await;
        (start.elapsed(), Cpu::now(SERVERS).since(&cpu))
    })
    .await;
    consumer.shutdown().await;
    let took = timed.unwrap_or_else(|_| {
        panic!(
            "idempotent run on {} stalled: {} received, {} processed of {n}; {} duplicates, \
             {} redelivered, {} retried, {} dead-lettered, {} unsettled",
            lane.topic,
            stats.received.get(),
            stats.processed.get(),
            stats.duplicates.get(),
            stats.redelivered.get(),
            stats.retried.get(),
            stats.dead_lettered.get(),
            stats.unsettled.get(),
        )
    });
    assert_eq!(stats.processed.get(), n, "every message ran once");
    store.purge(scope).await.unwrap();
    took
}

/// The servers metered: the broker and name server (`rocketmq-broker`, `rocketmq-namesr`),
/// and Redis.
const SERVERS: &[Server] = &[("rocketmq", "rocketmq-"), ("redis", "redis-server")];

#[tokio::main]
async fn main() {
    let n = count("IDEMQ_BENCH_N", 5_000).max(1);
    let rounds = count("IDEMQ_BENCH_ROUNDS", 3).max(1);
    let warm_n = (n / 10).max(1);

    let redis = RedisStore::connect(&env("IDEMQ_REDIS_URL", "redis://127.0.0.1:6379"))
        .await
        .unwrap_or_else(|e| panic!("Redis must be running for this benchmark: {e}"));
    let scope = Scope::new("bench/rocketmq").unwrap();
    redis.purge(&scope).await.unwrap();
    let client = Client::new(name_server()).unwrap();
    if tokio::net::TcpStream::connect(client.name_server())
        .await
        .is_err()
    {
        panic!(
            "RocketMQ must be running for this benchmark (scripts/rocketmq start; or set \
             IDEMQ_ROCKETMQ_NAMESRV): nothing answers on {}",
            client.name_server()
        );
    }
    let producer = Arc::new(Producer::start(&client, "idemq-bench").await.unwrap());

    // Everything is sent before anything is timed.
    let fill_started = Instant::now();
    let warm = (
        Lane::filled(&producer, "warm-raw", warm_n).await,
        Lane::filled(&producer, "warm-idem", warm_n).await,
    );
    let mut lanes = Vec::new();
    for _ in 0..rounds {
        lanes.push((
            Lane::filled(&producer, "raw", n).await,
            Lane::filled(&producer, "idem", n).await,
        ));
    }
    let filled_in = fill_started.elapsed();
    println!(
        "RocketMQ push consume, {QUEUES} queues, {BATCH} msgs per listener call, \
         {LISTENER_CALLS} calls at once; {rounds} rounds of {n} msgs after a warm-up \
         (topics filled in {:.1} s, untimed)",
        filled_in.as_secs_f64()
    );

    raw(&client, &warm.0).await;
    idempotent(&client, &redis, &scope, &warm.1).await;
    let (mut raw_rates, mut idem_rates) = (Rates::default(), Rates::default());
    let (mut raw_cpu, mut idem_cpu) = (Cpu::default(), Cpu::default());
    for (r, (raw_lane, idem_lane)) in lanes.iter().enumerate() {
        let ((raw_took, raw_used), (idem_took, idem_used));
        if r % 2 == 0 {
            (raw_took, raw_used) = raw(&client, raw_lane).await;
            (idem_took, idem_used) = idempotent(&client, &redis, &scope, idem_lane).await;
        } else {
            (idem_took, idem_used) = idempotent(&client, &redis, &scope, idem_lane).await;
            (raw_took, raw_used) = raw(&client, raw_lane).await;
        }
        raw_cpu.add(&raw_used);
        idem_cpu.add(&idem_used);
        let (raw_rate, idem_rate) = (raw_rates.push(n, raw_took), idem_rates.push(n, idem_took));
        println!(
            "  round {}: raw {raw_rate:>7.0} msgs/s, idemq {idem_rate:>7.0} msgs/s, ratio {:.2} \
             ({} first)",
            r + 1,
            idem_rate / raw_rate,
            if r % 2 == 0 { "raw" } else { "idemq" }
        );
    }
    producer.shutdown().await;

    println!(
        "  {:<46} {:>8} {:>8} {:>8}",
        "msgs/s", "min", "median", "max"
    );
    line("raw DefaultMQPushConsumer: listener, success", &raw_rates);
    line("idemq: RmqSource + run, RedisStore", &idem_rates);
    ratio_line("ratio idemq/raw (per round)", &idem_rates, &raw_rates);
    cpu_header("CPU µs per message (timed windows)", SERVERS);
    cpu_line("raw DefaultMQPushConsumer", &raw_cpu, n * rounds);
    cpu_line("idemq", &idem_cpu, n * rounds);
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    println!(
        "  {:<46} {:>8.2}   (raw CPU per message / idemq's, {cores} cores shared)",
        "CPU-bound ceiling of the ratio",
        cpu_ceiling(&raw_cpu, &idem_cpu)
    );
    client.shutdown().await;
}
