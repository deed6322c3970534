//! Connection loss: the consumer reconnects with backoff, resumes, and the message whose
//! ack was lost is applied once.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use idemq_core::Message as _;
use idemq_rabbitmq::{AmqpDelivery, Consumer, ConsumerHandle, Outgoing, Publisher};
use tokio::sync::{mpsc, Semaphore};

/// A consumer that counts effects per key; a handler for a key starting with `hold` reports
/// that it started and waits for a permit on `gate`.
struct Rig {
    consumer: ConsumerHandle,
    effects: Arc<Mutex<HashMap<String, u32>>>,
    started: mpsc::UnboundedReceiver<String>,
    gate: Arc<Semaphore>,
}

fn rig(topology: &idemq_rabbitmq::Topology, scope: &str) -> Rig {
    let effects = Arc::new(Mutex::new(HashMap::new()));
    let (tx, started) = mpsc::unbounded_channel();
    let gate = Arc::new(Semaphore::new(0));
    let (e, g) = (effects.clone(), gate.clone());
    let consumer = Consumer::new(uri(), topology.clone(), memory_engine(scope))
        .reconnect_backoff(Duration::from_millis(50), Duration::from_secs(1))
        .spawn(move |d: &AmqpDelivery| {
            let key = d.message_id().unwrap().to_owned();
            let (e, g, tx) = (e.clone(), g.clone(), tx.clone());
            async move {
                let _ = tx.send(key.clone());
                if key.starts_with("hold") {
                    g.acquire().await.unwrap().forget();
                }
                *e.lock().unwrap().entry(key).or_insert(0) += 1;
                Ok::<_, String>(())
            }
        });
    Rig {
        consumer,
        effects,
        started,
        gate,
    }
}

async fn lose_connection_while_a_handler_runs(server_side: bool) {
    let topology = fresh(
        if server_side { "srvclose" } else { "cliclose" },
        fast_policy(5),
    );
    let (_conn, admin) = admin(&topology).await;
    let publisher = Publisher::on_channel(admin.clone(), &topology)
        .await
        .unwrap();
    let mut rig = rig(&topology, "reconnect");
    rig.consumer.wait_for_session(1).await;

    publisher
        .publish(Outgoing::new(&b"1"[..]).key("m1"))
        .await
        .unwrap();
    assert_eq!(rig.started.recv().await.unwrap(), "m1");
    publisher
        .publish(Outgoing::new(&b"2"[..]).key("hold-m2"))
        .await
        .unwrap();
    assert_eq!(rig.started.recv().await.unwrap(), "hold-m2");

    // The connection dies while hold-m2's handler runs; the handler then finishes and
    // records its effect, but its ack cannot reach the broker.
    if server_side {
        close_from_server(rig.consumer.connection_name()).await;
    } else {
        rig.consumer.disconnect().await;
    }
    rig.gate.add_permits(1);
    rig.consumer.wait_for_session(2).await;

    publisher
        .publish(Outgoing::new(&b"3"[..]).key("m3"))
        .await
        .unwrap();
    let stats = rig.consumer.stats();
    // m1 and m3 acked as processed, hold-m2 acked as a duplicate when it came back.
    eventually("three acks", || stats.acked.get() == 3).await;
    assert_eq!(stats.unsettled.get(), 1, "hold-m2's first ack was lost");
    let effects = rig.effects.lock().unwrap().clone();
    assert_eq!(
        effects,
        HashMap::from([("m1".into(), 1), ("hold-m2".into(), 1), ("m3".into(), 1)])
    );
    rig.consumer.shutdown().await.unwrap();
    topology.delete(&admin).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_close_reconnects_and_keeps_the_effect_single() {
    lose_connection_while_a_handler_runs(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_side_close_reconnects_and_keeps_the_effect_single() {
    lose_connection_while_a_handler_runs(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_returns_while_the_broker_is_unreachable() {
    let topology = fresh("down", fast_policy(3));
    // Nothing listens on port 1: every session fails to connect, and the consumer keeps
    // trying until it is stopped rather than giving up or spinning.
    let consumer = Consumer::new(
        "amqp://guest:guest@127.0.0.1:1/%2f",
        topology,
        memory_engine("down"),
    )
    .reconnect_backoff(Duration::from_millis(10), Duration::from_millis(40))
    .spawn(|_: &AmqpDelivery| async { Ok::<_, String>(()) });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(consumer.stats().sessions.get(), 0);
    consumer.shutdown().await.unwrap();
}
