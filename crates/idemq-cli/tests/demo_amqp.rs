//! The demo across processes on RabbitMQ: one `demo produce`, two `demo consume` processes
//! of which one is killed (SIGKILL) mid-way, then `demo check` finds every order applied
//! exactly once. Fails when RabbitMQ is not running on 127.0.0.1:5672 (guest/guest).

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use idemq_cli::demo::story::BusinessDb;
use idemq_cli::url::DbUrl;

const BROKER: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const ORDERS: i64 = 300;

fn args<'a>(command: &'a str, db: &'a str, topic: &'a str) -> Vec<&'a str> {
    vec![
        "demo",
        command,
        "--broker",
        BROKER,
        "--db",
        db,
        "--topic",
        topic,
        "--orders",
        "300",
        "--duplicates",
        "0.3",
        "--failures",
        "0.2",
    ]
}

/// `args` with `flag`'s value replaced.
fn set<'a>(mut args: Vec<&'a str>, flag: &str, value: &'a str) -> Vec<&'a str> {
    let at = args
        .iter()
        .position(|a| *a == flag)
        .expect("the flag is there");
    args[at + 1] = value;
    args
}

fn idemq(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_idemq"))
        .args(args)
        .env("RUST_LOG", "error")
        .output()
        .expect("the idemq binary runs")
}

fn consume(db: &str, topic: &str, seed: &str) -> Child {
    let mut a = args("consume", db, topic);
    a.extend([
        "--idle-exit",
        "3",
        "--consumers",
        "4",
        "--seed",
        seed,
        "--store",
        "same",
    ]);
    Command::new(env!("CARGO_BIN_EXE_idemq"))
        .args(&a)
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the idemq binary runs")
}

fn text(out: &Output) -> String {
    format!(
        "{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Two consumer processes that both run to the end apply each order once.
#[test]
fn two_consumer_processes_apply_each_order_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("shop.db").display());
    let topic = format!("amqp2-{}", idemq_core::time::now_ms());
    let produced = idemq(&args("produce", &db, &topic));
    assert!(
        produced.status.success(),
        "produce failed (is RabbitMQ up?):\n{}",
        text(&produced)
    );
    let (a, b) = (consume(&db, &topic, "21"), consume(&db, &topic, "22"));
    for c in [a, b] {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "a consumer failed:\n{}", text(&out));
    }
    let checked = idemq(&args("check", &db, &topic));
    let report = text(&checked);
    assert!(checked.status.success(), "check failed:\n{report}");
    assert!(report.contains("300 orders, 300 flow rows"), "{report}");
}

// The consumers keep the record in the business transaction (`--store same`): with a
// separate store, a SIGKILL between the business commit and the store's completion would
// leave the order applied with its claim unfinished, and the redelivery would apply it again.
#[tokio::test(flavor = "multi_thread")]
async fn two_consumer_processes_one_killed_apply_each_order_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("shop.db").display());
    let topic = format!("amqp-{}", idemq_core::time::now_ms());

    let produced = idemq(&args("produce", &db, &topic));
    assert!(
        produced.status.success(),
        "produce failed (is RabbitMQ up?):\n{}",
        text(&produced)
    );

    let mut doomed = consume(&db, &topic, "11");
    let survivor = consume(&db, &topic, "12");

    // Kill the first process once some orders are applied and before all are: SIGKILL,
    // with handlers and business transactions in flight.
    let business = BusinessDb::open_existing(&db.parse::<DbUrl>().unwrap())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let applied_at_kill = loop {
        let applied: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM demo_stock_flow WHERE topic = ?")
                .bind(&topic)
                .fetch_one(business.pool())
                .await
                .unwrap_or(0);
        if applied >= ORDERS / 5 {
            break applied;
        }
        assert!(
            Instant::now() < deadline,
            "consumers applied only {applied} orders in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        doomed.try_wait().unwrap().is_none(),
        "the first consumer must still be running when it is killed"
    );
    doomed.kill().unwrap();
    doomed.wait().unwrap();
    assert!(applied_at_kill < ORDERS, "the kill must happen mid-way");

    let survived = survivor.wait_with_output().unwrap();
    assert!(
        survived.status.success(),
        "the surviving consumer failed:\n{}",
        text(&survived)
    );

    let checked = idemq(&args("check", &db, &topic));
    let report = text(&checked);
    assert!(checked.status.success(), "check failed:\n{report}");
    assert!(report.contains("violations: 0"), "{report}");
    assert!(report.contains("300 orders, 300 flow rows"), "{report}");
}

/// A producer's resends from outside the project: each order again under a new message id,
/// the same fields through another serializer (a space after each colon and comma). The
/// demo's business key with its order fingerprint makes them duplicates: nothing is
/// dead-lettered as a conflict, and each order applies once.
#[tokio::test(flavor = "multi_thread")]
async fn resends_with_another_serializer_are_duplicates_not_conflicts() {
    use idemq_cli::demo::story::Order;
    use idemq_rabbitmq::lapin::options::BasicPublishOptions;
    use idemq_rabbitmq::lapin::BasicProperties;

    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("shop.db").display());
    let topic = format!("resend-{}", idemq_core::time::now_ms());
    let produce = set(args("produce", &db, &topic), "--duplicates", "0");
    let produced = idemq(&produce);
    assert!(
        produced.status.success(),
        "produce failed:\n{}",
        text(&produced)
    );

    let conn = idemq_rabbitmq::connect(BROKER, "resender").await.unwrap();
    let channel = conn.create_channel().await.unwrap();
    let queue = format!("idemq-demo.{topic}");
    for i in 0..ORDERS as u32 {
        let o = Order::nth(i);
        let body = format!(
            "{{\"order_id\": \"{}\", \"sku\": \"{}\", \"qty\": {}}}",
            o.order_id, o.sku, o.qty
        );
        assert_ne!(body.as_bytes(), &o.encode()[..], "another serialization");
        let props = BasicProperties::default().with_message_id(format!("resend-{i}").into());
        channel
            .basic_publish(
                "".into(),
                queue.as_str().into(),
                BasicPublishOptions::default(),
                body.as_bytes(),
                props,
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let mut consume = set(args("consume", &db, &topic), "--failures", "0");
    consume.extend(["--idle-exit", "3"]);
    let consumed = idemq(&consume);
    let report = text(&consumed);
    assert!(consumed.status.success(), "consume failed:\n{report}");
    let row = report
        .lines()
        .find(|l| l.contains("dead-lettered"))
        .unwrap_or_else(|| panic!("no dead-lettered row:\n{report}"));
    assert!(row.trim().ends_with(" 0"), "nothing dead-lettered: {row}");
    let dups = report
        .lines()
        .find(|l| l.contains("duplicates skipped"))
        .unwrap();
    let n: u64 = dups.split_whitespace().last().unwrap().parse().unwrap();
    assert!(n >= ORDERS as u64, "every resend skipped: {dups}");
    let checked = idemq(&args("check", &db, &topic));
    let report = text(&checked);
    assert!(checked.status.success(), "check failed:\n{report}");
    assert!(report.contains("300 orders, 300 flow rows"), "{report}");
}
