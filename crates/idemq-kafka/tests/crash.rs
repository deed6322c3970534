//! A group member SIGKILLed mid-stream, never leaving its group, on rdkafka's `MockCluster`
//! (librdkafka's Kafka cluster, reached over TCP by member processes): the coordinator
//! drops the dead member after its session timeout and gives its partitions to the
//! survivor, which resumes from their last commits, and every record is applied once in
//! MariaDB. tansu 0.6.0 gives a dead member's partitions to no one until a member joins
//! (see the README), so this path is tested here; demo_kafka tests it on tansu with a
//! replacement process.
//!
//! No test harness: this binary is the test (it panics on failure) and, run with
//! [`MEMBER`] set, one member process.

use std::process::{Child, Command};
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use idemq_consumer::in_tx;
use idemq_core::adapter::{HandlerFuture, RetryPolicy};
use idemq_core::{EngineConfig, Scope, TxEngine};
use idemq_kafka::names::{dead_letter_topic, retry_topic};
use idemq_kafka::rdkafka::mocking::MockCluster;
use idemq_kafka::{keys, KafkaDelivery, KafkaSource, Outgoing, Producer};
use idemq_mysql::MySqlStore;
use sqlx::MySqlConnection;

/// Set in a member process: `BOOTSTRAP TOPIC GROUP SCOPE TABLE`, space-separated.
const MEMBER: &str = "IDEMQ_KAFKA_CRASH_MEMBER";
const MYSQL: &str = "mysql://root@127.0.0.1:3306/test";
const RECORDS: i64 = 200;

async fn store() -> Arc<MySqlStore> {
    Arc::new(
        MySqlStore::connect(MYSQL)
            .await
            .unwrap_or_else(|e| panic!("MariaDB at 127.0.0.1:3306 is required: {e}")),
    )
}

/// One member: applies each record by inserting its key in `table`, in the record's
/// transaction, until it is killed.
async fn member(args: &str) {
    let [bootstrap, topic, group, scope, table] = args
        .split(' ')
        .collect::<Vec<_>>()
        .try_into()
        .expect("five arguments");
    let engine = TxEngine::new(
        store().await,
        EngineConfig::new(Scope::new(scope).unwrap()),
        keys::record_key(),
    );
    let insert = format!("INSERT INTO {table} (k) VALUES (?)");
    let decode = move |d: &KafkaDelivery| {
        let key = d.key().ok_or("no record key")?;
        Ok((String::from_utf8_lossy(key).into_owned(), insert.clone()))
    };
    let h = KafkaSource::new(bootstrap, topic, group, RetryPolicy::default())
        .unwrap()
        .create_topics(false)
        .consumer()
        .spawn(in_tx(engine, decode, apply));
    h.join().await;
}

/// Applies one record: its key inserted by `insert`, in the record's transaction.
fn apply(
    (key, insert): (String, String),
    tx: &mut MySqlConnection,
) -> HandlerFuture<'_, (), sqlx::Error> {
    Box::pin(async move {
        // Slow enough that the kill lands mid-stream.
        tokio::time::sleep(Duration::from_millis(5)).await;
        sqlx::query(&insert).bind(key).execute(&mut *tx).await?;
        Ok(())
    })
}

/// A member process, SIGKILLed when dropped (a failed assertion leaves none behind).
struct Member(Child);

impl Member {
    fn spawn(args: &str) -> Self {
        let child = Command::new(std::env::current_exe().unwrap())
            .env(MEMBER, args)
            .env("RUST_LOG", "error")
            .spawn()
            .expect("a member process");
        Self(child)
    }

    /// SIGKILL: the member leaves nothing behind, not even a LeaveGroup.
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn applied(db: &sqlx::MySqlPool, table: &str) -> (i64, i64) {
    sqlx::query_as(&format!("SELECT COUNT(*), COUNT(DISTINCT k) FROM {table}"))
        .fetch_one(db)
        .await
        .unwrap()
}

/// Waits until `f` holds of what is applied, polling MariaDB (other processes write it:
/// there is no event to await).
async fn until(db: &sqlx::MySqlPool, table: &str, what: &str, f: impl Fn((i64, i64)) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let now = applied(db, table).await;
        if f(now) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: only {now:?} (rows, keys) applied in 90 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn scenario() {
    let cluster = MockCluster::new(1).expect("a mock cluster");
    let id = uuid::Uuid::new_v4().simple().to_string();
    let (topic, table) = (
        format!("crash-{}", &id[..12]),
        format!("kafka_crash_{}", &id[..12]),
    );
    // The mock cluster answers no CreateTopics: the source's topics are made here.
    for t in [
        topic.clone(),
        retry_topic(&topic),
        dead_letter_topic(&topic),
    ] {
        cluster.create_topic(&t, 4, 1).unwrap();
    }
    let db = store().await.pool().clone();
    sqlx::query(&format!("CREATE TABLE {table} (k VARCHAR(64) NOT NULL)"))
        .execute(&db)
        .await
        .unwrap();
    let producer = Producer::new(&cluster.bootstrap_servers()).unwrap();
    futures::stream::iter(0..RECORDS)
        .map(|i| {
            let key = format!("order-{i}");
            producer.send(Outgoing::new(&topic, key.clone()).key(key))
        })
        .buffer_unordered(64)
        .try_for_each(|_| async { Ok(()) })
        .await
        .unwrap();

    let args = format!(
        "{} {topic} g-{} kafka-crash/{id} {table}",
        cluster.bootstrap_servers(),
        &id[..12]
    );
    let mut doomed = Member::spawn(&args);
    let mut survivor = Member::spawn(&args);
    until(&db, &table, "before the kill", |(rows, _)| {
        rows >= RECORDS / 4
    })
    .await;
    doomed.kill();
    let at_kill = applied(&db, &table).await;
    assert!(
        at_kill.0 < RECORDS,
        "the kill must land mid-stream: {at_kill:?}"
    );

    until(&db, &table, "after the kill", |(_, keys)| keys == RECORDS).await;
    survivor.kill();
    let (rows, keys) = applied(&db, &table).await;
    sqlx::query(&format!("DROP TABLE {table}"))
        .execute(&db)
        .await
        .unwrap();
    assert_eq!(
        (rows, keys),
        (RECORDS, RECORDS),
        "every record applied once (killed at {at_kill:?})"
    );
    println!("crash: a member SIGKILLed at {at_kill:?} (rows, keys); the survivor applied the rest, {RECORDS} in all, once each");
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    match std::env::var(MEMBER) {
        Ok(args) => runtime.block_on(member(&args)),
        Err(_) => runtime.block_on(scenario()),
    }
}
