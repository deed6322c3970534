//! The demo across processes on RocketMQ: one `demo produce`, two `demo consume` processes
//! in one consumer group (one of them killed with SIGKILL mid-way), then `demo check` finds
//! every order applied exactly once. Fails when RocketMQ is not running on 127.0.0.1:9876
//! (`scripts/rocketmq start`).

mod common;

use common::Demo;

/// A killed process's queues go to the survivor only once the broker has dropped the dead
/// client (`rocketmq-broker` 1.0.0 ignores the closed connection and waits for its
/// `channelExpiredTimeout`, 25 s under `scripts/rocketmq`, checked every 10 s) and told the
/// survivor to rebalance. The idle exit outlasts that.
const DEMO: Demo = Demo {
    broker: "rocketmq://127.0.0.1:9876",
    idle_exit: "60",
};

#[test]
fn two_consumer_processes_apply_each_order_once() {
    common::two_consumer_processes_apply_each_order_once(&DEMO);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_consumer_processes_one_killed_apply_each_order_once() {
    common::two_consumer_processes_one_killed_apply_each_order_once(&DEMO).await;
}
