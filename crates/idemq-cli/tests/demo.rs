//! The demo end to end: `idemq demo run` applies every order exactly once on each store,
//! and `idemq demo check` catches a planted double apply and a missing order.

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

/// Runs the story with 30% duplicate sends and 20% failing handlers on `store`, and
/// expects every order applied exactly once.
fn run_is_exactly_once(store: &str) {
    let dir = tempfile::tempdir().unwrap();
    let db = db_url(dir.path());
    // A store outside the temporary directory outlives the test: a fresh topic is a fresh
    // scope, so an earlier run's records cannot answer for this one.
    let topic = format!("exactly-once-{}", idemq_core::time::now_ms());
    let out = idemq(&[
        "demo",
        "run",
        "--orders",
        "400",
        "--duplicates",
        "0.3",
        "--failures",
        "0.2",
        "--store",
        store,
        "--db",
        &db,
        "--topic",
        &topic,
        "--seed",
        "7",
    ]);
    let text = stdout(&out);
    assert_eq!(
        last_line(&out),
        "violations: 0",
        "store {store}:\n{text}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("400 orders, 400 flow rows"), "{text}");
    // The faults really happened: the run proved something.
    let count = |row: &str| -> u64 {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(row))
            .unwrap();
        line[row.len() + 2..]
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(count("duplicates skipped") > 0, "{text}");
    assert!(count("retries (handler errors)") > 0, "{text}");
    assert!(count("crashes before commit") > 0, "{text}");
    assert_eq!(count("effects applied"), 400, "{text}");
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
    run_is_exactly_once("redis://127.0.0.1:6379");
}

#[test]
fn run_on_a_redis_cluster_store_applies_each_order_once() {
    // Fails when scripts/redis-cluster has not started the cluster on 17000-17002.
    run_is_exactly_once("redis-cluster://127.0.0.1:17000,127.0.0.1:17001,127.0.0.1:17002");
}

#[test]
fn run_on_the_postgres_store_applies_each_order_once() {
    // Fails when PostgreSQL does not answer on 5432 with trust auth and database `test`.
    run_is_exactly_once("postgres://postgres@127.0.0.1:5432/test");
}

#[test]
fn run_on_the_mysql_store_applies_each_order_once() {
    // Fails when MariaDB does not answer on 3306 for root without a password, database `test`.
    run_is_exactly_once("mysql://root@127.0.0.1:3306/test");
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
        "amqp://",
        "kafka://",
        "rocketmq://",
        "nats://",
    ] {
        assert!(text.contains(form), "{form} missing from:\n{text}");
    }
}
