//! Messages per second consumed and acked from RabbitMQ: each idempotent consumer against a
//! raw lapin consumer doing the same work, on the same broker in the same run.
//!
//! 1. A trivial handler: raw `basic.consume` with concurrent `basic.ack`s, against
//!    [`AmqpSource`] + [`idemq_consumer::run`] with the Redis store.
//! 2. One PostgreSQL row written in its own transaction: raw consume, `BEGIN; INSERT;
//!    COMMIT`, ack, against [`idemq_consumer::in_tx`] with [`PgStore`], the idempotency
//!    record in that same transaction. Same pool size and handlers in flight on both sides.
//!
//! Every queue is filled before anything is timed. Each line warms up (one short run of
//! each side), then runs its rounds with raw and idempotent alternating which goes first, so
//! drift on a shared machine hits both. A run is timed from its first delivery to its last
//! ack; queues, records and rows are removed afterwards.
//!
//! Line 1 also prints the CPU each side cost per message in this process, RabbitMQ and
//! Redis: on a machine whose cores they share, the ratio cannot exceed raw CPU over
//! idempotent CPU, whatever the consumer does.
//!
//! `cargo bench -p idemq-rabbitmq --bench consume`. Env: `IDEMQ_BENCH_N` (messages per run
//! of line 1, default 20000), `IDEMQ_BENCH_PG_N` (line 2, default N/4),
//! `IDEMQ_BENCH_ROUNDS` (default 5), `IDEMQ_AMQP_URL`, `IDEMQ_REDIS_URL`, `IDEMQ_PG_URL`.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use idemq_conformance::bench::{
    count, cpu_ceiling, cpu_header, cpu_line, env, line, ratio_line, Cpu, Rates, Server,
};
use idemq_consumer::{in_tx, run, Consumer, Handler};
use idemq_core::adapter::{HandlerFuture, RetryPolicy};
use idemq_core::{Engine, EngineConfig, KeyStrategy, Message, Scope, Store, TxEngine};
use idemq_postgres::PgStore;
use idemq_rabbitmq::lapin::message::Delivery;
use idemq_rabbitmq::lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use idemq_rabbitmq::lapin::types::FieldTable;
use idemq_rabbitmq::lapin::Channel;
use idemq_rabbitmq::{connect, AmqpDelivery, AmqpSource, Outgoing, Publisher, Topology};
use idemq_redis::RedisStore;
use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions};
use tokio::task::JoinSet;

const PREFETCH: u16 = 256;
/// Handlers in flight on line 1 (raw: acks in flight).
const CONCURRENCY: usize = 64;
/// The pool size of [`PgStore::connect`]; the raw side gets a pool of the same size.
const PG_POOL: u32 = 16;
/// Handlers in flight on line 2 on both sides: one per pooled connection.
const PG_CONCURRENCY: usize = 16;
const ROWS: &str = "idemq_bench_amqp_rows";
const INSERT: &str = "INSERT INTO idemq_bench_amqp_rows (k, v) VALUES ($1, $2)";

fn uri() -> String {
    env("IDEMQ_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")
}

fn topology(kind: &str) -> Topology {
    let id = uuid::Uuid::new_v4().simple().to_string();
    Topology::new(
        &format!("bench-{kind}-{}", &id[..8]),
        RetryPolicy::default(),
    )
    .unwrap()
}

/// A queue filled with `n` messages, each with its own key.
async fn filled(kind: &str, n: usize) -> Topology {
    let topology = topology(kind);
    let publisher = Publisher::connect(&uri(), &topology)
        .await
        .unwrap_or_else(|e| panic!("RabbitMQ must be running for this benchmark: {e}"));
    let mut i = 0;
    while i < n {
        let batch = (i..(i + 1000).min(n)).map(|k| Outgoing::new(format!("order-{k}")));
        i += batch.len();
        publisher.publish_all(batch).await.unwrap();
    }
    topology
}

/// The raw consumer: `work` runs as its own task for each delivery (it acks), at most
/// `concurrency` at once, as the idempotent consumer's handlers do. Times the first delivery
/// to the last ack.
async fn raw<F, Fut>(topology: &Topology, n: usize, concurrency: usize, work: F) -> Duration
where
    F: Fn(Delivery) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let conn = connect(&uri(), "idemq-bench-raw").await.unwrap();
    let channel = conn.create_channel().await.unwrap();
    channel
        .basic_qos(PREFETCH, BasicQosOptions::default())
        .await
        .unwrap();
    let mut deliveries = channel
        .basic_consume(
            topology.queue().into(),
            "raw".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut tasks = JoinSet::new();
    let mut start = None;
    for _ in 0..n {
        let d = deliveries.next().await.unwrap().unwrap();
        start.get_or_insert_with(Instant::now);
        while tasks.len() >= concurrency {
            tasks.join_next().await.unwrap().unwrap();
        }
        tasks.spawn(work(d));
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let took = start.expect("n > 0").elapsed();
    let _ = conn.close(200, "bench done".into()).await;
    took
}

async fn ack(d: Delivery) {
    assert!(d.ack(BasicAckOptions::default()).await.unwrap());
}

async fn insert_then_ack(pool: PgPool, d: Delivery) {
    let key = d.properties.message_id().as_ref().unwrap().to_string();
    let mut tx = pool.begin().await.unwrap();
    sqlx::query(INSERT)
        .bind(key)
        .bind(d.data.len() as i64)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    ack(d).await;
}

/// Runs an idempotent consumer over a filled queue; times its first delivery to its `n`th
/// processed (and acked) message.
async fn idempotent<H: Handler<AmqpDelivery>>(
    consumer: Consumer<AmqpSource>,
    n: usize,
    handler: H,
) -> Duration {
    let consumer = consumer.spawn(handler);
    let stats = consumer.stats().clone();
    stats.wait_until(|s| s.received.get() > 0).await;
    let start = Instant::now();
    stats.wait_until(|s| s.acked() >= n as u64).await;
    let took = start.elapsed();
    consumer.shutdown().await;
    assert_eq!(stats.processed.get(), n as u64, "every message ran once");
    took
}

/// Pins a closure to the higher-ranked signature `in_tx` wants.
fn writes<F>(f: F) -> F
where
    F: for<'t> Fn((String, i64), &'t mut PgConnection) -> HandlerFuture<'t, (), sqlx::Error>,
{
    f
}

/// Line 1: the idempotent consumer with the Redis store and a trivial handler.
async fn redis_run(store: &RedisStore, scope: &Scope, topology: &Topology, n: usize) -> Duration {
    let engine = Engine::new(
        store.clone(),
        EngineConfig::new(scope.clone()),
        KeyStrategy::MessageId,
    );
    let consumer = AmqpSource::new(uri(), topology.clone())
        .prefetch(PREFETCH)
        .consumer()
        .concurrency(CONCURRENCY);
    let took = idempotent(
        consumer,
        n,
        run(engine, |d: &AmqpDelivery| {
            let len = d.data().len();
            async move { Ok::<_, String>(len.to_string()) }
        }),
    )
    .await;
    store.purge(scope).await.unwrap();
    took
}

/// Line 2, raw: the row in its own transaction, then the ack.
async fn pg_raw_run(pool: &PgPool, topology: &Topology, n: usize) -> Duration {
    let work = |d| insert_then_ack(pool.clone(), d);
    let took = raw(topology, n, PG_CONCURRENCY, work).await;
    truncate_rows(pool, n).await;
    took
}

/// Line 2, idempotent: the row written in the record's transaction.
async fn pg_run(
    store: &Arc<PgStore>,
    scope: &Scope,
    pool: &PgPool,
    topology: &Topology,
    n: usize,
) -> Duration {
    let engine = TxEngine::new(
        store.clone(),
        EngineConfig::new(scope.clone()),
        KeyStrategy::MessageId,
    );
    // One delivery per handler task, so as many transactions are in flight as on the raw
    // side; a batch of `in_tx` would only run more of them side by side on the same pool.
    let consumer = AmqpSource::new(uri(), topology.clone())
        .prefetch(PREFETCH)
        .consumer()
        .concurrency(PG_CONCURRENCY)
        .batch(1);
    let handler = in_tx(
        engine,
        |d: &AmqpDelivery| {
            let key = d.message_id().ok_or("no message id")?.to_owned();
            Ok((key, d.data().len() as i64))
        },
        writes(|(key, v), tx| {
            Box::pin(async move {
                sqlx::query(INSERT).bind(key).bind(v).execute(tx).await?;
                Ok(())
            })
        }),
    );
    let took = idempotent(consumer, n, handler).await;
    store.purge(scope).await.unwrap();
    truncate_rows(pool, n).await;
    took
}

/// Checks that each message wrote its one row, then empties the table.
async fn truncate_rows(pool: &PgPool, n: usize) {
    let (rows,): (i64,) = sqlx::query_as(&format!("SELECT count(*) FROM {ROWS}"))
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(rows, n as i64, "one row per message");
    sqlx::query(&format!("TRUNCATE {ROWS}"))
        .execute(pool)
        .await
        .unwrap();
}

/// The servers whose CPU line 1 meters.
const SERVERS: &[Server] = &[("rabbitmq", "beam.smp"), ("redis", "redis-server")];

/// Runs `fut`, adding the CPU it cost to `into`.
async fn metered<T>(into: &mut Cpu, fut: impl Future<Output = T>) -> T {
    let before = Cpu::now(SERVERS);
    let out = fut.await;
    into.add(&Cpu::now(SERVERS).since(&before));
    out
}

/// One line's rounds: `raw_run` and `idem_run` on their own filled queues, alternating
/// which goes first.
struct Rounds {
    raw: Vec<Topology>,
    idem: Vec<Topology>,
}

impl Rounds {
    async fn fill(kind: &str, rounds: usize, n: usize) -> Self {
        let mut out = Self {
            raw: Vec::new(),
            idem: Vec::new(),
        };
        for _ in 0..rounds {
            out.raw.push(filled(&format!("{kind}-raw"), n).await);
            out.idem.push(filled(&format!("{kind}-idem"), n).await);
        }
        out
    }

    async fn delete(&self, channel: &Channel) {
        for t in self.raw.iter().chain(&self.idem) {
            t.delete(channel).await.unwrap();
        }
    }
}

#[tokio::main]
async fn main() {
    let n = count("IDEMQ_BENCH_N", 20_000).max(1);
    let pg_n = count("IDEMQ_BENCH_PG_N", n / 4).max(1);
    let rounds = count("IDEMQ_BENCH_ROUNDS", 5).max(1);

    let redis = RedisStore::connect(&env("IDEMQ_REDIS_URL", "redis://127.0.0.1:6379"))
        .await
        .unwrap_or_else(|e| panic!("Redis must be running for this benchmark: {e}"));
    let pg_url = env("IDEMQ_PG_URL", "postgres://postgres@127.0.0.1:5432/test");
    let pg = Arc::new(
        PgStore::connect(&pg_url)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL must be running for this benchmark: {e}")),
    );
    let pool = PgPoolOptions::new()
        .max_connections(PG_POOL)
        .connect(&pg_url)
        .await
        .unwrap();
    sqlx::raw_sql(&format!(
        "DROP TABLE IF EXISTS {ROWS}; CREATE TABLE {ROWS} (k TEXT PRIMARY KEY, v BIGINT NOT NULL);"
    ))
    .execute(&pool)
    .await
    .unwrap();
    let redis_scope = Scope::new("bench/amqp").unwrap();
    let pg_scope = Scope::new("bench/amqp-pg").unwrap();
    redis.purge(&redis_scope).await.unwrap();
    pg.purge(&pg_scope).await.unwrap();

    // Everything is published before anything is timed.
    let fill_started = Instant::now();
    let warm = Rounds::fill("warm", 1, (n / 10).max(1)).await;
    let pg_warm = Rounds::fill("pgwarm", 1, (pg_n / 10).max(1)).await;
    let plain = Rounds::fill("plain", rounds, n).await;
    let tx = Rounds::fill("tx", rounds, pg_n).await;
    let filled_in = fill_started.elapsed();

    let (mut raw_rates, mut idem_rates) = (Rates::default(), Rates::default());
    let warm_n = (n / 10).max(1);
    raw(&warm.raw[0], warm_n, CONCURRENCY, ack).await;
    redis_run(&redis, &redis_scope, &warm.idem[0], warm_n).await;
    let (mut raw_cpu, mut idem_cpu) = (Cpu::default(), Cpu::default());
    for r in 0..rounds {
        let raw_run = raw(&plain.raw[r], n, CONCURRENCY, ack);
        let idem_run = redis_run(&redis, &redis_scope, &plain.idem[r], n);
        if r % 2 == 0 {
            raw_rates.push(n, metered(&mut raw_cpu, raw_run).await);
            idem_rates.push(n, metered(&mut idem_cpu, idem_run).await);
        } else {
            idem_rates.push(n, metered(&mut idem_cpu, idem_run).await);
            raw_rates.push(n, metered(&mut raw_cpu, raw_run).await);
        }
    }

    let (mut pg_raw_rates, mut pg_idem_rates) = (Rates::default(), Rates::default());
    let pg_warm_n = (pg_n / 10).max(1);
    pg_raw_run(&pool, &pg_warm.raw[0], pg_warm_n).await;
    pg_run(&pg, &pg_scope, &pool, &pg_warm.idem[0], pg_warm_n).await;
    for r in 0..rounds {
        let raw_run = pg_raw_run(&pool, &tx.raw[r], pg_n);
        let idem_run = pg_run(&pg, &pg_scope, &pool, &tx.idem[r], pg_n);
        if r % 2 == 0 {
            pg_raw_rates.push(pg_n, raw_run.await);
            pg_idem_rates.push(pg_n, idem_run.await);
        } else {
            pg_idem_rates.push(pg_n, idem_run.await);
            pg_raw_rates.push(pg_n, raw_run.await);
        }
    }

    let conn = connect(&uri(), "idemq-bench-cleanup").await.unwrap();
    let channel = conn.create_channel().await.unwrap();
    for set in [&warm, &pg_warm, &plain, &tx] {
        set.delete(&channel).await;
    }
    sqlx::query(&format!("DROP TABLE {ROWS}"))
        .execute(&pool)
        .await
        .unwrap();

    println!(
        "RabbitMQ consume + ack, prefetch {PREFETCH}, {rounds} rounds after a warm-up \
         (queues filled in {:.1} s, untimed)",
        filled_in.as_secs_f64()
    );
    println!(
        "  {:<46} {:>8} {:>8} {:>8}",
        "msgs/s", "min", "median", "max"
    );
    println!("1. trivial handler, {n} msgs per run, {CONCURRENCY} handlers in flight");
    line("raw lapin: consume + ack", &raw_rates);
    line("idempotent: AmqpSource + run, RedisStore", &idem_rates);
    ratio_line("ratio idempotent/raw (per round)", &idem_rates, &raw_rates);
    cpu_header("CPU µs per message (all rounds)", SERVERS);
    cpu_line("raw lapin", &raw_cpu, n * rounds);
    cpu_line("idempotent", &idem_cpu, n * rounds);
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    println!(
        "  {:<46} {:>8.2}   (raw CPU per message / idempotent's, {cores} cores shared)",
        "CPU-bound ceiling of the ratio",
        cpu_ceiling(&raw_cpu, &idem_cpu)
    );
    println!(
        "2. one PostgreSQL row in its own transaction, {pg_n} msgs per run, pool {PG_POOL}, \
         {PG_CONCURRENCY} in flight"
    );
    line("raw lapin: BEGIN; INSERT; COMMIT; ack", &pg_raw_rates);
    line(
        "idempotent: in_tx, PgStore, record in the tx",
        &pg_idem_rates,
    );
    ratio_line(
        "ratio idempotent/raw (per round)",
        &pg_idem_rates,
        &pg_raw_rates,
    );
}
