//! The demo across processes on Kafka: one `demo produce`, two `demo consume` processes in
//! one consumer group (one of them killed with SIGKILL mid-way), then `demo check` finds
//! every order applied exactly once. Fails when nothing answers on 127.0.0.1:9092
//! (`scripts/tansu start`).

mod common;

use common::Demo;

/// A killed member keeps its partitions until the broker's session timeout (10 s) runs out
/// and the group rebalances, which took over 25 s under CI load; the idle exit outlasts that.
const DEMO: Demo = Demo {
    broker: "kafka://127.0.0.1:9092",
    idle_exit: "60",
};

#[test]
fn two_consumer_processes_apply_each_order_once() {
    common::two_consumer_processes_apply_each_order_once(&DEMO);
}

/// Open bug (issue 11): against a long-running tansu 0.6.0 the SIGKILLed member's
/// partitions never reached the survivor (129 of 300 orders missing, none doubled), though
/// it passed earlier the same day on a fresh broker. Run it with `--ignored`.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "open bug: tansu does not reassign a SIGKILLed member's partitions (issue 11)"]
async fn two_consumer_processes_one_killed_apply_each_order_once() {
    common::two_consumer_processes_one_killed_apply_each_order_once(&DEMO).await;
}
