//! Shared test helpers: the broker address, fresh topologies, reading the DLQ, and killing
//! connections.
#![allow(dead_code)]

use std::future::Future;
use std::process::Command;
use std::time::Duration;

use futures::StreamExt;
use idemq_core::adapter::RetryPolicy;
use idemq_core::store::MemoryStore;
use idemq_core::{Engine, EngineConfig, KeyStrategy, Scope, Store};
use idemq_rabbitmq::lapin::message::Delivery;
use idemq_rabbitmq::lapin::options::{BasicAckOptions, BasicConsumeOptions};
use idemq_rabbitmq::lapin::types::FieldTable;
use idemq_rabbitmq::lapin::{Channel, Connection, Consumer as RawConsumer};
use idemq_rabbitmq::{AmqpDelivery, Topology};

/// The broker under test: `IDEMQ_AMQP_URL`, else the local RabbitMQ.
pub fn uri() -> String {
    std::env::var("IDEMQ_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// A short policy for tests: 200 ms first retry, doubling; in-progress redeliveries after
/// 100 ms.
pub fn fast_policy(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        initial_interval: Duration::from_millis(200),
        multiplier: 2.0,
        max_interval: Duration::from_secs(5),
        redeliver_after: Duration::from_millis(100),
    }
}

/// A topology on a queue name no other test uses.
pub fn fresh(prefix: &str, policy: RetryPolicy) -> Topology {
    let id = uuid::Uuid::new_v4().simple().to_string();
    Topology::new(&format!("t-{prefix}-{}", &id[..12]), policy).unwrap()
}

/// An admin connection and channel with the topology declared; fails clearly when RabbitMQ
/// is down.
pub async fn admin(topology: &Topology) -> (Connection, Channel) {
    let conn = idemq_rabbitmq::connect(&uri(), "idemq-test-admin")
        .await
        .unwrap_or_else(|e| {
            panic!("RabbitMQ must be running for these tests (set IDEMQ_AMQP_URL): {e}")
        });
    let channel = conn.create_channel().await.unwrap();
    topology.declare(&channel).await.unwrap();
    (conn, channel)
}

/// An engine over a store, keyed by message id.
pub fn engine(store: impl Store, scope: &str) -> Engine<AmqpDelivery> {
    Engine::new(
        store,
        EngineConfig::new(Scope::new(scope).unwrap()),
        KeyStrategy::MessageId,
    )
}

/// A memory-store engine keyed by message id, with a short lease.
pub fn engine_with_lease(scope: &str, lease: Duration) -> Engine<AmqpDelivery> {
    Engine::new(
        MemoryStore::new(),
        EngineConfig::new(Scope::new(scope).unwrap()).lease(lease),
        KeyStrategy::MessageId,
    )
}

/// A memory-store engine keyed by message id.
pub fn memory_engine(scope: &str) -> Engine<AmqpDelivery> {
    engine(MemoryStore::new(), scope)
}

/// A raw consumer of a queue (the DLQ), to await what lands there.
pub async fn watch(channel: &Channel, queue: &str) -> RawConsumer {
    channel
        .basic_consume(
            queue.into(),
            format!("watch-{}", uuid::Uuid::new_v4().simple())
                .as_str()
                .into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap()
}

/// The next message on a watched queue, acked; panics after 30 s.
pub async fn next(watched: &mut RawConsumer) -> Delivery {
    let d = tokio::time::timeout(Duration::from_secs(30), watched.next())
        .await
        .expect("no message within 30 s")
        .expect("consumer ended")
        .expect("consumer error");
    d.ack(BasicAckOptions::default()).await.unwrap();
    d
}

/// Awaits `fut`; panics after 30 s.
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Closes a connection from the server side, found by its connection name.
pub async fn close_from_server(name: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let out = Command::new("rabbitmqctl")
            .args(["-q", "list_connections", "pid", "client_properties"])
            .output()
            .expect("rabbitmqctl must be installed next to RabbitMQ for this test");
        assert!(
            out.status.success(),
            "rabbitmqctl list_connections failed: {out:?}"
        );
        let listing = String::from_utf8_lossy(&out.stdout);
        if let Some(line) = listing.lines().find(|l| l.contains(name)) {
            let pid = line.split('\t').next().unwrap();
            let closed = Command::new("rabbitmqctl")
                .args(["-q", "close_connection", pid, "idemq test"])
                .status()
                .unwrap();
            assert!(
                closed.success(),
                "rabbitmqctl close_connection {pid} failed"
            );
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "connection {name} never listed by rabbitmqctl"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
