//! The demo end to end: `idemq demo run` applies every order exactly once on each store
//! and each business database, and `idemq demo check` catches a planted double apply and a
//! missing order.
//!
//! Needs the servers of the notes: Redis on 6379, MariaDB on 3306 (root, no password,
//! database `test`), PostgreSQL on 5432 (trust, user postgres, database `test`); a test whose
//! server is down fails, naming the URL.

use std::path::Path;
use std::process::{Command, Output};

use idemq_cli::demo::story::BusinessDb;
use idemq_cli::url::DbUrl;

fn idemq(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_idemq"))
        .args(args)
        .env("RUST_LOG", "error")
        .output()
        .expect("the idemq binary runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn last_line(out: &Output) -> String {
    stdout(out).lines().last().unwrap_or_default().to_owned()
}

fn db_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("shop.db").display())
}

const MYSQL: &str = "mysql://root@127.0.0.1:3306/test";
const POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/test";
const REDIS: &str = "redis://127.0.0.1:6379";

/// Runs the story with 30% duplicate sends and 20% failing handlers on `store`, with a
/// business database in a temporary SQLite file, and expects every order applied exactly
/// once.
fn run_is_exactly_once(store: &str) {
    let dir = tempfile::tempdir().unwrap();
    run_on(&db_url(dir.path()), store, 400);
}

/// Runs the story on business database `db` with `store`; expects every order applied
/// exactly once and the faults to have happened. Returns the printed report.
fn run_on(db: &str, store: &str, orders: u32) -> String {
    // A database or store outside the temporary directory outlives the test: a fresh topic
    // is a fresh scope and fresh rows, so an earlier run cannot answer for this one.
    let topic = format!("exactly-once-{}", idemq_core::time::now_ms());
    let orders_arg = orders.to_string();
    let out = idemq(&[
        "demo",
        "run",
        "--orders",
        &orders_arg,
        "--duplicates",
        "0.3",
        "--failures",
        "0.2",
        "--store",
        store,
        "--db",
        db,
        "--topic",
        &topic,
        "--seed",
        "7",
    ]);
    let text = stdout(&out);
    assert_eq!(
        last_line(&out),
        "violations: 0",
        "store {store}, db {db}:\n{text}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!("{orders} orders, {orders} flow rows")),
        "{text}"
    );
    // The faults really happened: the run proved something.
    assert!(count(&text, "duplicates skipped") > 0, "{text}");
    assert!(count(&text, "retries (handler errors)") > 0, "{text}");
    assert!(count(&text, "crashes before commit") > 0, "{text}");
    assert_eq!(count(&text, "effects applied"), u64::from(orders), "{text}");
    text
}

/// Like [`run_on`] for a store that writes its record in the business transaction: there
/// the demo also kills consumers after the handler's writes, before the commit.
fn run_in_tx_on(db: &str, store: &str) {
    let text = run_on(db, store, 300);
    assert!(count(&text, "crashes after write") > 0, "{text}");
}

/// The number in a row of the run's table.
fn count(text: &str, row: &str) -> u64 {
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with(row))
        .unwrap_or_else(|| panic!("no row {row:?} in:\n{text}"));
    line.trim_start()[row.len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("row {row:?} has no count in:\n{text}"))
}

#[test]
fn run_on_the_memory_store_applies_each_order_once() {
    run_is_exactly_once("memory://");
}

#[test]
fn run_on_the_sqlite_store_applies_each_order_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("records.db").display());
    run_is_exactly_once(&store);
}

#[test]
fn run_on_the_redis_store_applies_each_order_once() {
    // Fails, naming the URL, when Redis is not running on 6379.
    run_is_exactly_once(REDIS);
}

#[test]
fn run_on_a_redis_cluster_store_applies_each_order_once() {
    // Fails when scripts/redis-cluster has not started the cluster on 17000-17002.
    run_is_exactly_once("redis-cluster://127.0.0.1:17000,127.0.0.1:17001,127.0.0.1:17002");
}

#[test]
fn run_on_the_postgres_store_applies_each_order_once() {
    // Fails when PostgreSQL does not answer on 5432 with trust auth and database `test`.
    run_is_exactly_once(POSTGRES);
}

#[test]
fn run_on_the_mysql_store_applies_each_order_once() {
    // Fails when MariaDB does not answer on 3306 for root without a password, database `test`.
    run_is_exactly_once(MYSQL);
}

#[test]
fn run_on_mysql_with_the_record_in_the_business_transaction() {
    // Fails when MariaDB does not answer on 3306 for root without a password, database `test`.
    run_in_tx_on(MYSQL, "same");
}

#[test]
fn run_on_postgres_with_the_record_in_the_business_transaction() {
    // Fails when PostgreSQL does not answer on 5432 with trust auth and database `test`.
    run_in_tx_on(POSTGRES, "same");
}

#[test]
fn run_on_sqlite_with_the_record_in_the_business_transaction() {
    let dir = tempfile::tempdir().unwrap();
    run_in_tx_on(&db_url(dir.path()), "same");
}

#[test]
fn run_on_redis_in_front_of_postgres() {
    // The business database is an SQLite file; the records live in PostgreSQL, with Redis
    // answering the duplicates. The crash after the write is not injected: the record is
    // outside the business database.
    let dir = tempfile::tempdir().unwrap();
    let store = format!("tiered+{REDIS}?durable={POSTGRES}");
    let text = run_on(&db_url(dir.path()), &store, 300);
    assert!(
        text.contains("crashes after write             -   not injected"),
        "{text}"
    );
}

#[test]
fn run_on_redis_in_front_of_the_postgres_business_database() {
    run_in_tx_on(POSTGRES, &format!("tiered+{REDIS}?durable=same"));
}

#[test]
fn run_on_postgres_with_a_separate_redis_store() {
    run_on(POSTGRES, REDIS, 300);
}

/// `demo check` on a server database: clean after a run, then a planted double apply is
/// found.
async fn check_catches_a_planted_double_on(db: &str) {
    let topic = format!("planted-{}", idemq_core::time::now_ms());
    let common = ["--db", db, "--topic", &topic, "--orders", "30"];
    let mut args = vec!["demo", "run", "--store", "same", "--seed", "5"];
    args.extend(common);
    let out = idemq(&args);
    assert_eq!(last_line(&out), "violations: 0", "{}", stdout(&out));
    let mut check = vec!["demo", "check"];
    check.extend(common);
    let clean = idemq(&check);
    assert_eq!(last_line(&clean), "violations: 0", "{}", stdout(&clean));

    let business = BusinessDb::open(&db.parse::<DbUrl>().unwrap(), 1)
        .await
        .unwrap();
    let plant = business.sql(
        "INSERT INTO demo_stock_flow (topic, order_id, sku, delta, applied_at) \
         SELECT topic, order_id, sku, delta, applied_at FROM demo_stock_flow \
         WHERE topic = ? AND order_id = 'order-000007'",
    );
    let planted = match &business {
        BusinessDb::Mysql(pool) => sqlx::query(&plant)
            .bind(&topic)
            .execute(pool)
            .await
            .map(|done| done.rows_affected()),
        BusinessDb::Postgres(pool) => sqlx::query(&plant)
            .bind(&topic)
            .execute(pool)
            .await
            .map(|done| done.rows_affected()),
        BusinessDb::Sqlite(_) => unreachable!("a server database"),
    };
    assert_eq!(planted.unwrap(), 1);
    business.close().await;

    let dirty = idemq(&check);
    let text = stdout(&dirty);
    assert_eq!(dirty.status.code(), Some(1), "{text}");
    assert!(text.contains("doubled: order-000007 ×2"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn check_catches_a_planted_double_on_mysql() {
    check_catches_a_planted_double_on(MYSQL).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn check_catches_a_planted_double_on_postgres() {
    check_catches_a_planted_double_on(POSTGRES).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn check_catches_a_doubled_and_a_missing_order() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_url(dir.path());
    let common = ["--db", &db, "--topic", "planted", "--orders", "50"];
    let mut args = vec!["demo", "run", "--store", "memory://", "--seed", "3"];
    args.extend(common);
    let out = idemq(&args);
    assert_eq!(last_line(&out), "violations: 0", "{}", stdout(&out));

    let mut check = vec!["demo", "check"];
    check.extend(common);
    let clean = idemq(&check);
    assert!(clean.status.success(), "{}", stdout(&clean));
    assert_eq!(last_line(&clean), "violations: 0");

    // Plant a double apply of one order and lose another's effect.
    let business = BusinessDb::open(&db.parse::<DbUrl>().unwrap(), 1)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO demo_stock_flow (topic, order_id, sku, delta, applied_at) \
         SELECT topic, order_id, sku, delta, applied_at FROM demo_stock_flow \
         WHERE topic = 'planted' AND order_id = 'order-000007'",
    )
    .execute(business.pool())
    .await
    .unwrap();
    sqlx::query(
        "DELETE FROM demo_stock_flow WHERE topic = 'planted' AND order_id = 'order-000011'",
    )
    .execute(business.pool())
    .await
    .unwrap();
    business.pool().close().await;

    let dirty = idemq(&check);
    let text = stdout(&dirty);
    assert_eq!(dirty.status.code(), Some(1), "{text}");
    assert!(text.contains("missing: order-000011"), "{text}");
    assert!(text.contains("doubled: order-000007 ×2"), "{text}");
    let n: u64 = last_line(&dirty)
        .strip_prefix("violations: ")
        .unwrap()
        .parse()
        .unwrap();
    // The two orders, and the SKUs whose stock no longer matches their flow rows.
    assert!(n >= 2, "{text}");
}

#[test]
fn check_refuses_a_topic_without_orders() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_url(dir.path());
    let missing_db = idemq(&["demo", "check", "--db", &db, "--topic", "never-ran"]);
    assert_eq!(missing_db.status.code(), Some(2));
    let ran = idemq(&[
        "demo",
        "run",
        "--db",
        &db,
        "--topic",
        "ran",
        "--orders",
        "5",
        "--store",
        "memory://",
    ]);
    assert!(ran.status.success(), "{}", stdout(&ran));
    let out = idemq(&["demo", "check", "--db", &db, "--topic", "never-ran"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("\"never-ran\" has no orders"), "{err}");
}

#[test]
fn the_split_commands_need_a_real_broker() {
    for command in ["produce", "consume"] {
        let out = idemq(&["demo", command, "--broker", "memory://"]);
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("needs a real broker"), "{err}");
    }
}

#[test]
fn help_documents_every_url_form() {
    let out = idemq(&["demo", "run", "--help"]);
    let text = stdout(&out);
    for form in [
        "memory://",
        "sqlite://FILE",
        "redis://HOST:PORT",
        "mysql://",
        "postgres://",
        "same",
        "tiered+redis://HOST:PORT?durable=URL",
        "durable=same",
        "mariadb://",
        "postgres://USER@HOST:PORT/DB",
        "amqp://",
        "kafka://",
        "rocketmq://",
        "nats://",
    ] {
        assert!(text.contains(form), "{form} missing from:\n{text}");
    }
}
