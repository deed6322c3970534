//! The demo across processes on RabbitMQ: one `demo produce`, two `demo consume` processes
//! of which one is killed (SIGKILL) mid-way, then `demo check` finds every order applied
//! exactly once. Fails when RabbitMQ is not running on 127.0.0.1:5672 (guest/guest).

mod common;

use common::{idemq, set, text, Demo, ORDERS};

const BROKER: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const DEMO: Demo = Demo {
    broker: BROKER,
    idle_exit: "3",
    replace_killed: None,
};

#[test]
fn two_consumer_processes_apply_each_order_once() {
    common::two_consumer_processes_apply_each_order_once(&DEMO);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_consumer_processes_one_killed_apply_each_order_once() {
    common::two_consumer_processes_one_killed_apply_each_order_once(&DEMO).await;
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
    let produce = set(DEMO.args("produce", &db, &topic), "--duplicates", "0");
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
    let mut consume = set(DEMO.args("consume", &db, &topic), "--failures", "0");
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
    let checked = idemq(&DEMO.args("check", &db, &topic));
    let report = text(&checked);
    assert!(checked.status.success(), "check failed:\n{report}");
    assert!(report.contains("300 orders, 300 flow rows"), "{report}");
}
