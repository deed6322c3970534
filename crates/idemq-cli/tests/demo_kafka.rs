//! The demo across processes on Kafka: one `demo produce`, two `demo consume` processes in
//! one consumer group (one of them killed with SIGKILL mid-way), then `demo check` finds
//! every order applied exactly once. Fails when nothing answers on 127.0.0.1:9092
//! (`scripts/tansu start`).

mod common;

use common::Demo;

/// A killed member keeps its partitions until the broker's session timeout (10 s) runs out
/// and the group rebalances; the idle exit outlasts that.
const DEMO: Demo = Demo {
    broker: "kafka://127.0.0.1:9092",
    idle_exit: "25",
};

#[test]
fn two_consumer_processes_apply_each_order_once() {
    common::two_consumer_processes_apply_each_order_once(&DEMO);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_consumer_processes_one_killed_apply_each_order_once() {
    common::two_consumer_processes_one_killed_apply_each_order_once(&DEMO).await;
}
