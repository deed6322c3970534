//! The dedup consumer on a real RocketMQ beyond the conformance suite: redeliveries and
//! resends skipped, the store down while consuming, the record in a MySQL business
//! transaction, and the orderly listener.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use idemq_consumer::{in_tx, run, ConsumerHandle, Stats};
use idemq_core::adapter::{HandlerFuture, RetryPolicy};
use idemq_core::store::MemoryStore;
use idemq_core::{Engine, EngineConfig, KeyStrategy, Message, Scope, TxEngine};
use idemq_mysql::MySqlStore;
use idemq_redis::RedisStore;
use idemq_rocketmq::{keys, Listener, Outgoing, RmqDelivery, RmqSource};

fn policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 5,
        initial_interval: Duration::from_millis(200),
        multiplier: 2.0,
        max_interval: Duration::from_secs(2),
        redeliver_after: Duration::from_millis(100),
    }
}

fn scope() -> Scope {
    Scope::new(format!("rocketmq/{}", uuid::Uuid::new_v4().simple())).unwrap()
}

/// How many times the handler ran for each key.
#[derive(Clone, Default)]
struct Runs(Arc<Mutex<HashMap<String, u32>>>);

impl Runs {
    fn add(&self, key: &str) {
        *self.0.lock().unwrap().entry(key.to_owned()).or_default() += 1;
    }
    fn of(&self, key: &str) -> u32 {
        self.0.lock().unwrap().get(key).copied().unwrap_or(0)
    }
}

async fn topic() -> (String, String) {
    let (topic, group) = (fresh("dedup"), fresh("g"));
    producer().await.create_topic(&topic, 4).await.unwrap();
    (topic, group)
}

async fn send(out: Outgoing) {
    producer().await.send(out).await.unwrap();
}

async fn until(what: &str, stats: &Stats, f: impl Fn(&Stats) -> bool) {
    within(60, what, stats.wait_until(f)).await;
}

/// A consumer of `topic` in `group` whose handler counts the runs of each payload.
fn counting(topic: &str, group: &str, engine: Engine<RmqDelivery>) -> (ConsumerHandle, Runs) {
    let runs = Runs::default();
    let r = runs.clone();
    let h = RmqSource::new(&client(), topic, group, policy())
        .unwrap()
        .consumer()
        .spawn(run(engine, move |d: &RmqDelivery| {
            r.add(&String::from_utf8_lossy(d.payload()));
            async { Ok::<_, String>(()) }
        }));
    (h, runs)
}

/// The broker delivers a consumed message again (its unique id sent once more): the
/// consumer keyed by unique id acks it as a duplicate without running the handler.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_redelivery_of_a_consumed_message_is_skipped() {
    let (topic, group) = topic().await;
    let engine = Engine::new(
        MemoryStore::new(),
        EngineConfig::new(scope()),
        keys::unique_id(),
    );
    let (h, runs) = counting(&topic, &group, engine);
    let stats = h.stats().clone();
    send(Outgoing::new(&topic, "m-1").id("uniq-1")).await;
    until("the first copy", &stats, |s| s.processed.get() == 1).await;
    send(Outgoing::new(&topic, "m-1").id("uniq-1")).await;
    until("the second copy", &stats, |s| s.duplicates.get() == 1).await;
    h.shutdown().await;
    assert_eq!(runs.of("m-1"), 1);
}

/// A producer resends an order under a new unique id with the same business key: the
/// consumer keyed by business key skips it (on Redis).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resend_under_a_new_id_with_the_same_business_key_is_skipped() {
    let (topic, group) = topic().await;
    let store = RedisStore::connect("redis://127.0.0.1:6379")
        .await
        .expect("Redis at 127.0.0.1:6379 is required");
    let engine = Engine::new(store, EngineConfig::new(scope()), keys::business_key());
    let (h, runs) = counting(&topic, &group, engine);
    let stats = h.stats().clone();
    send(Outgoing::new(&topic, "order-7").key("order-7").id("a-1")).await;
    until("the order", &stats, |s| s.processed.get() == 1).await;
    send(Outgoing::new(&topic, "order-7").key("order-7").id("a-2")).await;
    until("the resend", &stats, |s| s.duplicates.get() == 1).await;
    h.shutdown().await;
    assert_eq!(runs.of("order-7"), 1);
}

/// The store is down while messages arrive: nothing is acknowledged as done and the
/// handler never runs; the messages come back later and, once the store is back, each is
/// applied once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_down_while_consuming_applies_once_when_it_is_back() {
    let (topic, group) = topic().await;
    let outage = Outage::start("127.0.0.1:6379").await;
    let store = RedisStore::connect(&format!("redis://127.0.0.1:{}", outage.port))
        .await
        .expect("Redis at 127.0.0.1:6379 is required");
    let engine = Engine::new(store, EngineConfig::new(scope()), keys::business_key());
    let (h, runs) = counting(&topic, &group, engine);
    let stats = h.stats().clone();
    h.wait_for_session(1).await;
    outage.down();
    for i in 0..5 {
        let key = format!("order-{i}");
        send(Outgoing::new(&topic, key.clone()).key(key)).await;
    }
    until("every order put back at least once", &stats, |s| {
        s.redelivered.get() >= 5
    })
    .await;
    assert_eq!(
        stats.processed.get(),
        0,
        "nothing applied while the store is down"
    );
    assert_eq!(stats.duplicates.get(), 0, "nothing acked as done");
    outage.up();
    until("every order applied", &stats, |s| s.processed.get() == 5).await;
    h.shutdown().await;
    for i in 0..5 {
        assert_eq!(runs.of(&format!("order-{i}")), 1);
    }
}

/// The record commits in the MySQL business transaction: an order and its resend under a
/// new id write one row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_record_commits_in_the_mysql_business_transaction() {
    let (topic, group) = topic().await;
    let store = MySqlStore::connect("mysql://root@127.0.0.1:3306/test")
        .await
        .expect("MariaDB or MySQL at 127.0.0.1:3306 (root, db test) is required");
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS idemq_test_rmq_orders \
         (run VARCHAR(64) NOT NULL, order_id VARCHAR(64) NOT NULL, PRIMARY KEY (run, order_id)) \
         ENGINE = InnoDB",
    )
    .execute(store.pool())
    .await
    .unwrap();
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let engine = TxEngine::new(
        Arc::new(store.clone()),
        EngineConfig::new(scope()),
        keys::business_key(),
    );
    let r = run_id.clone();
    let h = RmqSource::new(&client(), &topic, &group, policy())
        .unwrap()
        .consumer()
        .spawn(in_tx(
            engine,
            move |d: &RmqDelivery| {
                Ok((r.clone(), String::from_utf8_lossy(d.payload()).into_owned()))
            },
            insert_order,
        ));
    let stats = h.stats().clone();
    for id in ["first", "resend"] {
        send(Outgoing::new(&topic, "order-9").key("order-9").id(id)).await;
    }
    until("the order and its resend", &stats, |s| {
        s.processed.get() == 1 && s.duplicates.get() == 1
    })
    .await;
    h.shutdown().await;
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM idemq_test_rmq_orders WHERE run = ?")
        .bind(&run_id)
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(rows, 1);
}

fn insert_order(
    (run, order): (String, String),
    conn: &mut sqlx::MySqlConnection,
) -> HandlerFuture<'_, (), sqlx::Error> {
    Box::pin(async move {
        sqlx::query("INSERT INTO idemq_test_rmq_orders (run, order_id) VALUES (?, ?)")
            .bind(run)
            .bind(order)
            .execute(conn)
            .await
            .map(drop)
    })
}

/// The orderly listener: one queue's messages run in queue order, and a failed one is
/// retried in place (the queue suspended) before the next runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_orderly_listener_keeps_queue_order_through_a_retry() {
    let topic = fresh("orderly");
    let group = fresh("g");
    producer().await.create_topic(&topic, 1).await.unwrap();
    for i in 0..5 {
        send(Outgoing::new(&topic, format!("m-{i}")).id(format!("o-{i}"))).await;
    }
    let engine = Engine::new(
        MemoryStore::new(),
        EngineConfig::new(scope()),
        KeyStrategy::MessageId,
    );
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let h = RmqSource::new(&client(), &topic, &group, policy())
        .unwrap()
        .listener(Listener::Orderly)
        .batch(1)
        .consumer()
        .spawn(run(engine, move |d: &RmqDelivery| {
            use idemq_core::adapter::Delivery as _;
            let body = String::from_utf8_lossy(d.payload()).into_owned();
            let attempt = d.attempt();
            s.lock().unwrap().push((body.clone(), attempt));
            async move {
                if body == "m-2" && attempt == 1 {
                    Err("first try fails".to_string())
                } else {
                    Ok(())
                }
            }
        }));
    let stats = h.stats().clone();
    until("all five", &stats, |s| s.processed.get() == 5).await;
    h.shutdown().await;
    let seen = seen.lock().unwrap().clone();
    let expected: Vec<(String, u32)> = [
        ("m-0", 1),
        ("m-1", 1),
        ("m-2", 1),
        ("m-2", 2),
        ("m-3", 1),
        ("m-4", 1),
    ]
    .into_iter()
    .map(|(b, a)| (b.to_string(), a))
    .collect();
    assert_eq!(seen, expected);
}
