//! The demo across processes on RocketMQ: one `demo produce`, two `demo consume` processes
//! in one consumer group (one of them killed with SIGKILL mid-way), then `demo check` finds
//! every order applied exactly once; and transactional producer processes killed after and
//! before a local commit, each committed order applied once. Fails when RocketMQ is not
//! running on 127.0.0.1:9876 (`scripts/rocketmq start`).

mod common;

use common::Demo;

/// A killed process's queues go to the survivor only once the broker has dropped the dead
/// client (`rocketmq-broker` 1.0.0 ignores the closed connection and waits for its
/// `channelExpiredTimeout`, 25 s under `scripts/rocketmq`, checked every 10 s) and told the
/// survivor to rebalance. The idle exit outlasts that.
const DEMO: Demo = Demo {
    broker: "rocketmq://127.0.0.1:9876",
    idle_exit: "60",
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

/// `demo produce --transactional`, three producer processes in one group: the first dies
/// right after its 40th local commit (before the broker hears of it), the second inside its
/// 80th local transaction (before that commit), the third sends the rest and stays up for
/// the check-backs. Then a consumer and `demo check`: every order that committed is applied
/// once (the 40th by the check-back the next process answered from the log), and no order
/// that declined or never committed is applied.
#[test]
fn transactional_producers_killed_mid_way_deliver_each_committed_order_once() {
    let dir = tempfile::tempdir().unwrap();
    let (db, topic) = common::fresh(&dir, "tx");
    let args = |command: &'static str| {
        vec![
            "demo",
            command,
            "--broker",
            DEMO.broker,
            "--db",
            &db,
            "--topic",
            &topic,
            "--orders",
            "200",
            "--seed",
            "5",
        ]
    };
    let produce = |extra: &[&str]| {
        let mut a = args("produce");
        a.extend(["--transactional", "--declines", "0.1"]);
        a.extend(extra);
        common::idemq(&a)
    };

    let first = produce(&["--crash-after-commit", "40"]);
    assert!(!first.status.success(), "{}", common::text(&first));
    assert!(common::text(&first).contains("crashing after local commit 40"));
    let second = produce(&["--crash-in-tx", "80"]);
    assert!(!second.status.success(), "{}", common::text(&second));
    assert!(common::text(&second).contains("crashing inside a local transaction"));
    let third = produce(&["--linger", "10"]);
    let report = common::text(&third);
    assert!(third.status.success(), "{report}");
    assert!(report.contains("already sent"), "{report}");

    let mut consume = args("consume");
    consume.extend(["--idle-exit", "10", "--store", "same", "--failures", "0.1"]);
    let consumed = common::idemq(&consume);
    assert!(consumed.status.success(), "{}", common::text(&consumed));

    let checked = common::idemq(&args("check"));
    let found = common::text(&checked);
    assert!(checked.status.success(), "{found}");
    assert!(found.contains("violations: 0"), "{found}");
    assert!(
        found.contains("0 missing, 0 doubled, 0 unknown"),
        "every committed order once, no other: {found}"
    );
}
