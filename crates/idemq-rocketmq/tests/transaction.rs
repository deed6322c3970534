//! Transactional messages on a real RocketMQ with real databases: commit delivers, rollback
//! never does, a producer that dies after its local commit is resolved by the check-back
//! from the log, one whose local transaction never committed is rolled back after the
//! grace period, a slow local transaction is unknown first and delivered once it commits,
//! and a check-back of a committed transaction delivers a copy the dedup consumer absorbs.
//!
//! The broker of `scripts/rocketmq` checks back every 2 s for half messages older than 1 s.

mod common;

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use futures::future::BoxFuture;
use idemq_consumer::{run, ConsumerHandle, Stats};
use idemq_core::adapter::RetryPolicy;
use idemq_core::{Engine, EngineConfig, Scope};
use idemq_mysql::MySqlTxLog;
use idemq_postgres::PgTxLog;
use idemq_redis::RedisStore;
use idemq_rocketmq::rocketmq_client_rust::{
    ClientConfig, LocalTransactionState, TransactionListener, TransactionMQProducer,
};
use idemq_rocketmq::rocketmq_model::common::message::message_accessor::MessageAccessor;
use idemq_rocketmq::rocketmq_model::common::message::message_ext::MessageExt;
use idemq_rocketmq::rocketmq_model::common::message::message_single::Message;
use idemq_rocketmq::rocketmq_model::common::message::{MessageConst, MessageTrait};
use idemq_rocketmq::transaction::{TxConfig, TxError, TxProducer};
use idemq_rocketmq::{keys, Client, Outgoing, RmqDelivery, RmqSource};
use idemq_sql::{TxLog, TxState};
use idemq_sqlite::SqliteTxLog;
use sqlx::{MySqlPool, PgPool, SqlitePool};

const MYSQL: &str = "mysql://root@127.0.0.1:3306/test";
const POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/test";

/// How many times the dedup consumer's handler ran per business key.
#[derive(Clone, Default)]
struct Runs(Arc<Mutex<HashMap<String, u32>>>);

impl Runs {
    fn of(&self, key: &str) -> u32 {
        self.0.lock().unwrap().get(key).copied().unwrap_or(0)
    }
    fn keys(&self) -> Vec<String> {
        let mut k: Vec<_> = self.0.lock().unwrap().keys().cloned().collect();
        k.sort();
        k
    }
}

/// A dedup consumer on Redis keyed by business key, counting its handler's runs.
async fn dedup_consumer(topic: &str) -> (ConsumerHandle, Runs) {
    let store = RedisStore::connect("redis://127.0.0.1:6379")
        .await
        .expect("Redis at 127.0.0.1:6379 is required");
    let scope = Scope::new(format!("rocketmq-tx/{}", uuid::Uuid::new_v4().simple())).unwrap();
    let engine = Engine::new(store, EngineConfig::new(scope), keys::business_key());
    let policy = RetryPolicy {
        max_attempts: 5,
        initial_interval: Duration::from_millis(200),
        multiplier: 2.0,
        max_interval: Duration::from_secs(2),
        redeliver_after: Duration::from_millis(100),
    };
    let runs = Runs::default();
    let r = runs.clone();
    let h = RmqSource::new(&client(), topic, fresh("txg"), policy)
        .unwrap()
        .from_first(true)
        .consumer()
        .spawn(run(engine, move |d: &RmqDelivery| {
            let key = d.keys().first().map(|k| k.to_string()).unwrap_or_default();
            *r.0.lock().unwrap().entry(key).or_default() += 1;
            async { Ok::<_, String>(()) }
        }));
    h.wait_for_session(1).await;
    (h, runs)
}

async fn until(what: &str, stats: &Stats, f: impl Fn(&Stats) -> bool) {
    within(90, what, stats.wait_until(f)).await;
}

async fn mysql() -> MySqlPool {
    let pool = MySqlPool::connect(MYSQL)
        .await
        .expect("MariaDB or MySQL at 127.0.0.1:3306 (root, db test) is required");
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS idemq_test_tx_orders \
         (order_id VARCHAR(64) NOT NULL PRIMARY KEY) ENGINE = InnoDB",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool
}

async fn mysql_log(pool: &MySqlPool) -> MySqlTxLog {
    let log = MySqlTxLog::new(pool.clone(), "idemq_test_tx_log").unwrap();
    log.migrate().await.unwrap();
    log
}

/// A local transaction on MySQL: insert the order's row, then `then` decides (commit on
/// `Ok`, roll back on `Err`, or never finish).
fn mysql_tx<Fut>(
    order: String,
    then: impl FnOnce() -> Fut + Send + 'static,
) -> impl for<'c> FnOnce(&'c mut sqlx::MySqlConnection) -> BoxFuture<'c, Result<(), String>> + Send
where
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    move |tx| {
        Box::pin(async move {
            sqlx::query("INSERT INTO idemq_test_tx_orders (order_id) VALUES (?)")
                .bind(order)
                .execute(&mut *tx)
                .await
                .map_err(|e| e.to_string())?;
            then().await
        })
    }
}

/// The local transaction of an order on MySQL that commits.
fn place(
    order: String,
) -> impl for<'c> FnOnce(&'c mut sqlx::MySqlConnection) -> BoxFuture<'c, Result<(), String>> + Send
{
    mysql_tx(order, || async { Ok(()) })
}

async fn placed(pool: &MySqlPool, order: &str) -> bool {
    sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM idemq_test_tx_orders WHERE order_id = ?")
        .bind(order)
        .fetch_one(pool)
        .await
        .unwrap()
        == 1
}

async fn start<L: TxLog>(group: &str, topic: &str, log: L, config: TxConfig) -> TxProducer<L> {
    start_on(&client(), group, topic, log, config).await
}

async fn start_on<L: TxLog>(
    client: &Client,
    group: &str,
    topic: &str,
    log: L,
    config: TxConfig,
) -> TxProducer<L> {
    require_broker().await;
    TxProducer::start(client, group, &[topic], log, config)
        .await
        .expect("transactional producer")
}

/// A client of its own, as a new producer process has: its own connections to the broker.
fn new_process() -> Client {
    Client::new(name_server()).expect("rocketmq client")
}

async fn topic() -> String {
    let topic = fresh("tx");
    producer().await.create_topic(&topic, 4).await.unwrap();
    topic
}

/// Sends a plain message after the transactional ones and waits until the consumer has
/// it: whatever the broker was going to deliver of the earlier sends on the same queues
/// has had its turn.
async fn fence(topic: &str, stats: &Stats, runs: &Runs) {
    let key = fresh("fence");
    producer()
        .await
        .send(Outgoing::new(topic, "fence").key(key.clone()))
        .await
        .unwrap();
    until("the fence message", stats, |_| runs.of(&key) == 1).await;
}

/// A committed local transaction delivers its message, applied once; a failed one rolls
/// the message back and it is never delivered (on MySQL).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_delivers_once_and_rollback_never_on_mysql() {
    let pool = mysql().await;
    let log = mysql_log(&pool).await;
    let topic = topic().await;
    let (h, runs) = dedup_consumer(&topic).await;
    let stats = h.stats().clone();
    let producer = start(&fresh("txp"), &topic, log.clone(), TxConfig::default()).await;
    let (good, bad) = (fresh("order"), fresh("order"));

    let sent = producer
        .send_in_transaction(
            Outgoing::new(&topic, "good").key(good.clone()),
            place(good.clone()),
        )
        .await
        .expect("committed");
    assert_eq!(sent.reported, LocalTransactionState::CommitMessage);
    assert_eq!(
        log.state(&sent.tx_id).await.unwrap(),
        Some(TxState::Committed)
    );
    let failing = mysql_tx("never-seen".into(), || async {
        Err("payment declined".into())
    });
    let refused = producer
        .send_in_transaction(
            Outgoing::new(&topic, "bad")
                .key(bad.clone())
                .id(bad.clone()),
            failing,
        )
        .await;
    assert!(matches!(refused, Err(TxError::Local(ref e)) if e == "payment declined"));
    assert_eq!(log.state(&bad).await.unwrap(), Some(TxState::RolledBack));

    until("the committed order", &stats, |_| runs.of(&good) == 1).await;
    fence(&topic, &stats, &runs).await;
    assert_eq!(runs.of(&good), 1, "applied once");
    assert_eq!(runs.of(&bad), 0, "a rolled-back message is never delivered");
    assert!(placed(&pool, &good).await);
    assert!(
        !placed(&pool, "never-seen").await,
        "the local writes rolled back"
    );
    h.shutdown().await;
    producer.shutdown().await;
}

/// The same id sent twice is one transaction: the second send is refused and rolled back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_send_of_one_transaction_id_is_refused() {
    let pool = mysql().await;
    let topic = topic().await;
    let producer = start(
        &fresh("txp"),
        &topic,
        mysql_log(&pool).await,
        TxConfig::default(),
    )
    .await;
    let order = fresh("order");
    let msg = || {
        Outgoing::new(&topic, "o")
            .key(order.clone())
            .id(order.clone())
    };
    producer
        .send_in_transaction(msg(), place(order.clone()))
        .await
        .expect("first send");
    let again = producer
        .send_in_transaction(msg(), place(order.clone()))
        .await;
    assert!(matches!(again, Err(TxError::Duplicate(ref id)) if *id == order));
    producer.shutdown().await;
}

/// A producer dies after its local transaction committed and before it told the broker:
/// the broker checks back with the group's next producer, which answers from the log, and
/// the message is delivered, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_gone_after_its_local_commit_is_resolved_by_the_check_back() {
    let pool = mysql().await;
    let log = mysql_log(&pool).await;
    let topic = topic().await;
    let (h, runs) = dedup_consumer(&topic).await;
    let stats = h.stats().clone();
    let group = fresh("txp");
    // The hook dies where a process would: the local commit is done, the broker not told.
    let dies = TxConfig {
        // `resume_unwind` unwinds without the panic hook: no backtrace for a planned death.
        after_commit: Some(Arc::new(|_| {
            std::panic::resume_unwind(Box::new("producer died after its local commit"))
        })),
        ..TxConfig::default()
    };
    let first = Arc::new(start(&group, &topic, log.clone(), dies).await);
    let order = fresh("order");
    let (f, t, o) = (first.clone(), topic.clone(), order.clone());
    let died = tokio::spawn(async move {
        f.send_in_transaction(
            Outgoing::new(&t, "o").key(o.clone()).id(o.clone()),
            place(o),
        )
        .await
    })
    .await;
    assert!(died.unwrap_err().is_panic());
    let died_at = Instant::now();
    first.shutdown().await;
    assert!(
        placed(&pool, &order).await,
        "the local transaction committed"
    );

    let process = new_process();
    let second = start_on(&process, &group, &topic, log, TxConfig::default()).await;
    until("the order, delivered by the check-back", &stats, |_| {
        runs.of(&order) == 1
    })
    .await;
    let resolved = died_at.elapsed();
    let checks = second.checks();
    assert!(
        checks.committed >= 1,
        "the new producer answered committed: {checks:?}"
    );
    fence(&topic, &stats, &runs).await;
    assert_eq!(runs.of(&order), 1);
    println!("check-back resolved a dead producer's committed message in {resolved:?}");
    h.shutdown().await;
    second.shutdown().await;
}

/// A producer gone after the half message, before its local transaction committed: no
/// row, so the check-backs answer unknown during the grace period, then settle the id as
/// rolled back; the message is never delivered, and the order never placed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_gone_before_its_local_commit_is_rolled_back_after_the_grace_period() {
    let pool = mysql().await;
    let log = mysql_log(&pool).await;
    let topic = topic().await;
    let (h, runs) = dedup_consumer(&topic).await;
    let stats = h.stats().clone();
    let group = fresh("txp");
    let first = Arc::new(start(&group, &topic, log.clone(), TxConfig::default()).await);
    let order = fresh("order");
    let (entered_tx, entered) = tokio::sync::oneshot::channel::<()>();
    let (f, t, o, key) = (first.clone(), topic.clone(), order.clone(), order.clone());
    let send = tokio::spawn(async move {
        let stuck = mysql_tx(o, move || async move {
            let _ = entered_tx.send(());
            std::future::pending::<Result<(), String>>().await
        });
        f.send_in_transaction(Outgoing::new(&t, "o").key(key), stuck)
            .await
    });
    within(30, "the local transaction to begin", entered)
        .await
        .unwrap();
    // The process dies: its future, its open transaction and its client go.
    send.abort();
    let _ = send.await;
    first.shutdown().await;

    let grace = TxConfig {
        grace: Duration::from_secs(4),
        ..TxConfig::default()
    };
    let process = new_process();
    let second = start_on(&process, &group, &topic, log, grace).await;
    let checks = within(
        90,
        "the check-back to settle the id",
        second.wait_for_checks(|c| c.settled >= 1 && c.rolled_back >= 1),
    )
    .await;
    assert!(checks.rolled_back >= 1, "{checks:?}");
    fence(&topic, &stats, &runs).await;
    assert!(
        runs.keys().iter().all(|k| k.starts_with("fence")),
        "only the fence was delivered: {:?}",
        runs.keys()
    );
    assert!(
        !placed(&pool, &order).await,
        "the open transaction rolled back"
    );
    h.shutdown().await;
    second.shutdown().await;
}

/// A local transaction slower than the first check-back: the client stops waiting and
/// tells the broker unknown, the check-backs answer unknown while the transaction runs
/// (no row yet, within the grace period), and once it commits the next check-back
/// delivers the message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_local_transaction_is_unknown_first_and_delivered_once_it_commits() {
    let pool = mysql().await;
    let log = mysql_log(&pool).await;
    let topic = topic().await;
    let (h, runs) = dedup_consumer(&topic).await;
    let stats = h.stats().clone();
    let config = TxConfig {
        local_timeout: Duration::from_millis(300),
        ..TxConfig::default()
    };
    let producer = Arc::new(start(&fresh("txp"), &topic, log, config).await);
    let order = fresh("order");
    let (release_tx, release) = tokio::sync::oneshot::channel::<()>();
    let (p, t, o, key) = (
        producer.clone(),
        topic.clone(),
        order.clone(),
        order.clone(),
    );
    let send = tokio::spawn(async move {
        let slow = mysql_tx(o, move || async move {
            let _ = release.await;
            Ok(())
        });
        p.send_in_transaction(Outgoing::new(&t, "o").key(key), slow)
            .await
    });
    let before = within(
        60,
        "a check-back while the local transaction runs",
        producer.wait_for_checks(|c| c.unknown >= 1),
    )
    .await;
    assert_eq!(before.committed, 0, "nothing committed yet: {before:?}");
    assert_eq!(runs.of(&order), 0, "not delivered while in doubt");
    release_tx.send(()).unwrap();
    let sent = send.await.unwrap().expect("committed");
    assert_eq!(
        sent.reported,
        LocalTransactionState::Unknown,
        "the client stopped waiting"
    );
    until("the order, delivered by a check-back", &stats, |_| {
        runs.of(&order) == 1
    })
    .await;
    assert!(producer.checks().committed >= 1);
    assert!(placed(&pool, &order).await);
    h.shutdown().await;
    producer.shutdown().await;
}

/// A half message left undecided, as a producer of `group` whose outcome never reached
/// the broker leaves it: `UNIQ_KEY` `tx_id`, business key `key`.
async fn undecided_half_message(group: &str, topic: &str, tx_id: &str, key: &str) {
    struct Undecided;
    impl TransactionListener for Undecided {
        fn execute_local_transaction(
            &self,
            _: &dyn MessageTrait,
            _: Option<&(dyn Any + Send + Sync)>,
        ) -> LocalTransactionState {
            LocalTransactionState::Unknown
        }
        fn check_local_transaction(&self, _: &MessageExt) -> LocalTransactionState {
            LocalTransactionState::Unknown
        }
    }
    let mut raw = TransactionMQProducer::builder(client().runtime())
        .client_config(ClientConfig {
            namesrv_addr: Some(name_server().into()),
            instance_name: fresh("raw").into(),
            ..Default::default()
        })
        .producer_group(group.to_string())
        .topics(vec![topic.to_string()])
        .transaction_listener(Undecided)
        .build();
    raw.start().await.unwrap();
    let mut msg = Message::builder()
        .topic(topic)
        .body("o")
        .key(key)
        .build()
        .unwrap();
    MessageAccessor::put_property(
        &mut msg,
        MessageConst::PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX.into(),
        tx_id.into(),
    );
    let sent = raw
        .send_message_in_transaction::<(), _>(msg, None)
        .await
        .unwrap();
    assert_eq!(
        sent.local_transaction_state,
        Some(LocalTransactionState::Unknown)
    );
    raw.shutdown().await;
}

/// A check-back of a transaction that already committed (brokers are known to check back
/// messages whose commit marker they have not seen yet; here a second half message of the
/// committed transaction is left undecided, so the check is certain): the log answers
/// committed again, the broker delivers a second copy with the same unique id and business
/// key, and the dedup consumer applies the order once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_back_after_the_commit_delivers_a_copy_the_dedup_consumer_absorbs() {
    let pool = mysql().await;
    let log = mysql_log(&pool).await;
    let topic = topic().await;
    let (h, runs) = dedup_consumer(&topic).await;
    let stats = h.stats().clone();
    let group = fresh("txp");
    let producer = start(&group, &topic, log, TxConfig::default()).await;
    let order = fresh("order");
    let sent = producer
        .send_in_transaction(
            Outgoing::new(&topic, "o").key(order.clone()),
            place(order.clone()),
        )
        .await
        .expect("committed");
    assert_eq!(sent.reported, LocalTransactionState::CommitMessage);
    until("the order", &stats, |_| runs.of(&order) == 1).await;

    undecided_half_message(&group, &topic, &sent.tx_id, &order).await;
    let checks = within(
        60,
        "the check-back",
        producer.wait_for_checks(|c| c.committed >= 1),
    )
    .await;
    assert_eq!(checks.rolled_back, 0, "{checks:?}");
    until("the second copy, skipped", &stats, |s| {
        s.duplicates.get() >= 1
    })
    .await;
    fence(&topic, &stats, &runs).await;
    assert_eq!(runs.of(&order), 1, "applied once");
    h.shutdown().await;
    producer.shutdown().await;
}

/// The commit and rollback paths on PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_delivers_and_rollback_never_on_postgres() {
    let pool = PgPool::connect(POSTGRES)
        .await
        .expect("PostgreSQL at 127.0.0.1:5432 (db test) is required");
    let log = PgTxLog::new(pool.clone(), "idemq_test_tx_log").unwrap();
    log.migrate().await.unwrap();
    sqlx::query("CREATE TABLE IF NOT EXISTS idemq_test_tx_orders (order_id TEXT PRIMARY KEY)")
        .execute(&pool)
        .await
        .unwrap();
    commit_and_rollback(log, |o| pg_tx(o, false), |o| pg_tx(o, true)).await;
}

/// The commit and rollback paths on SQLite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_delivers_and_rollback_never_on_sqlite() {
    let dir = std::env::temp_dir().join(format!("idemq-tx-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(dir.join("orders.db"))
        .create_if_missing(true)
        .busy_timeout(Duration::from_secs(10));
    let pool = SqlitePool::connect_with(options).await.unwrap();
    let log = SqliteTxLog::new(pool.clone(), "idemq_tx_log").unwrap();
    log.migrate().await.unwrap();
    sqlx::query("CREATE TABLE IF NOT EXISTS orders (order_id TEXT PRIMARY KEY)")
        .execute(&pool)
        .await
        .unwrap();
    commit_and_rollback(log, |o| sqlite_tx(o, false), |o| sqlite_tx(o, true)).await;
    let _ = std::fs::remove_dir_all(dir);
}

/// The local transaction of an order on PostgreSQL, declined when `fail`.
fn pg_tx(
    order: String,
    fail: bool,
) -> impl for<'c> FnOnce(&'c mut sqlx::PgConnection) -> BoxFuture<'c, Result<(), String>> + Send {
    move |tx| {
        Box::pin(async move {
            sqlx::query("INSERT INTO idemq_test_tx_orders (order_id) VALUES ($1)")
                .bind(order)
                .execute(&mut *tx)
                .await
                .map_err(|e| e.to_string())?;
            if fail {
                Err("declined".into())
            } else {
                Ok(())
            }
        })
    }
}

/// The local transaction of an order on SQLite, declined when `fail`.
fn sqlite_tx(
    order: String,
    fail: bool,
) -> impl for<'c> FnOnce(&'c mut sqlx::SqliteConnection) -> BoxFuture<'c, Result<(), String>> + Send
{
    move |tx| {
        Box::pin(async move {
            sqlx::query("INSERT INTO orders (order_id) VALUES (?1)")
                .bind(order)
                .execute(&mut *tx)
                .await
                .map_err(|e| e.to_string())?;
            if fail {
                Err("declined".into())
            } else {
                Ok(())
            }
        })
    }
}

/// Sends one order that commits and one whose local transaction fails; the first is
/// applied once, the second never delivered and logged rolled back.
async fn commit_and_rollback<L, G, B, FG, FB>(log: L, good: G, bad: B)
where
    L: TxLog,
    G: Fn(String) -> FG,
    B: Fn(String) -> FB,
    FG: for<'c> FnOnce(
            &'c mut <L::Db as sqlx::Database>::Connection,
        ) -> BoxFuture<'c, Result<(), String>>
        + Send,
    FB: for<'c> FnOnce(
            &'c mut <L::Db as sqlx::Database>::Connection,
        ) -> BoxFuture<'c, Result<(), String>>
        + Send,
{
    let topic = topic().await;
    let (h, runs) = dedup_consumer(&topic).await;
    let stats = h.stats().clone();
    let producer = start(&fresh("txp"), &topic, log.clone(), TxConfig::default()).await;
    let (ok, ko) = (fresh("order"), fresh("order"));
    let sent = producer
        .send_in_transaction(Outgoing::new(&topic, "o").key(ok.clone()), good(ok.clone()))
        .await
        .expect("committed");
    assert_eq!(
        log.state(&sent.tx_id).await.unwrap(),
        Some(TxState::Committed)
    );
    let refused = producer
        .send_in_transaction(
            Outgoing::new(&topic, "o").key(ko.clone()).id(ko.clone()),
            bad(ko.clone()),
        )
        .await;
    assert!(matches!(refused, Err(TxError::Local(_))));
    assert_eq!(log.state(&ko).await.unwrap(), Some(TxState::RolledBack));
    until("the committed order", &stats, |_| runs.of(&ok) == 1).await;
    fence(&topic, &stats, &runs).await;
    assert_eq!((runs.of(&ok), runs.of(&ko)), (1, 0));
    h.shutdown().await;
    producer.shutdown().await;
}
