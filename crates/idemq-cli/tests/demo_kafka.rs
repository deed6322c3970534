//! The demo across processes on Kafka: one `demo produce`, two `demo consume` processes in
//! one consumer group (one of them killed with SIGKILL mid-way and replaced by a third),
//! then `demo check` finds every order applied exactly once. Fails when nothing answers on
//! 127.0.0.1:9092 (`scripts/tansu start`).

mod common;

use std::time::Duration;

use common::Demo;

/// The killed process is replaced by a new one, as a deployment restarts a crashed
/// consumer: tansu 0.6.0 drops a dead member after its session timeout (10 s) but leaves
/// the group formed, so the survivor rejoins into the same generation and the dead member's
/// partitions go to no one until a member joins. The replacement starts once the dead
/// member is dropped (15 s: the timeout, then a survivor heartbeat, with room for load); a
/// join before that forms a generation that still gives the dead member its partitions.
/// The idle exit outlasts the wait and the rebalance.
const DEMO: Demo = Demo {
    broker: "kafka://127.0.0.1:9092",
    idle_exit: "60",
    replace_killed: Some(Duration::from_secs(15)),
};

#[test]
fn two_consumer_processes_apply_each_order_once() {
    common::two_consumer_processes_apply_each_order_once(&DEMO);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_consumer_processes_one_killed_and_replaced_apply_each_order_once() {
    common::two_consumer_processes_one_killed_apply_each_order_once(&DEMO).await;
}
