//! RabbitMQ closing the connection from its side: the consumer notices (even with every
//! handler slot hung), reconnects with backoff, and each effect stays single.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use idemq_consumer::{run, ConsumerHandle};
use idemq_core::Message as _;
use idemq_rabbitmq::{AmqpDelivery, AmqpSource, Outgoing, Publisher, Topology};
use tokio::sync::{mpsc, Semaphore};

/// A consumer that counts effects per key; a handler for a key starting with `hold` reports
/// that it started and waits for a permit on `gate`; one for `hang` never returns on its
/// first run.
struct Rig {
    consumer: ConsumerHandle,
    name: String,
    effects: Arc<Mutex<HashMap<String, u32>>>,
    started: mpsc::UnboundedReceiver<String>,
    gate: Arc<Semaphore>,
}

fn rig(topology: &Topology, scope: &str, concurrency: usize) -> Rig {
    let effects = Arc::new(Mutex::new(HashMap::new()));
    let (tx, started) = mpsc::unbounded_channel();
    let gate = Arc::new(Semaphore::new(0));
    let (e, g) = (effects.clone(), gate.clone());
    let hung_once = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let engine = engine_with_lease(scope, Duration::from_millis(500));
    let source = AmqpSource::new(uri(), topology.clone());
    let name = source.name().to_owned();
    let consumer = source
        .consumer()
        .concurrency(concurrency)
        .drain_timeout(Duration::from_millis(300))
        .reconnect_backoff(Duration::from_millis(50), Duration::from_secs(1))
        .spawn(run(engine, move |d: &AmqpDelivery| {
            let key = d.message_id().unwrap().to_owned();
            let (e, g, tx, hung) = (e.clone(), g.clone(), tx.clone(), hung_once.clone());
            async move {
                let _ = tx.send(key.clone());
                if key == "hang" && !hung.swap(true, std::sync::atomic::Ordering::SeqCst) {
                    std::future::pending::<()>().await;
                }
                if key.starts_with("hold") {
                    g.acquire().await.unwrap().forget();
                }
                *e.lock().unwrap().entry(key).or_insert(0) += 1;
                Ok::<_, String>(())
            }
        }));
    Rig {
        consumer,
        name,
        effects,
        started,
        gate,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_close_reconnects_and_keeps_the_effect_single() {
    let topology = fresh("srvclose", fast_policy(5));
    let (_conn, admin) = admin(&topology).await;
    let publisher = Publisher::on_channel(admin.clone(), &topology)
        .await
        .unwrap();
    let mut rig = rig(&topology, "reconnect", 8);
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
    close_from_server(&rig.name).await;
    rig.gate.add_permits(1);
    rig.consumer.wait_for_session(2).await;

    publisher
        .publish(Outgoing::new(&b"3"[..]).key("m3"))
        .await
        .unwrap();
    let stats = rig.consumer.stats().clone();
    // m1 and m3 acked as processed, hold-m2 acked as a duplicate when it came back.
    within("three acks", stats.wait_until(|s| s.acked() == 3)).await;
    assert_eq!(stats.unsettled.get(), 1, "hold-m2's first ack was lost");
    assert_eq!(stats.duplicates.get(), 1);
    let effects = rig.effects.lock().unwrap().clone();
    assert_eq!(
        effects,
        HashMap::from([("m1".into(), 1), ("hold-m2".into(), 1), ("m3".into(), 1)])
    );
    rig.consumer.shutdown().await;
    topology.delete(&admin).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_connection_is_noticed_while_every_handler_slot_hangs() {
    let topology = fresh("drainlost", fast_policy(5));
    let (_conn, admin) = admin(&topology).await;
    let publisher = Publisher::on_channel(admin.clone(), &topology)
        .await
        .unwrap();
    // One handler slot, taken by hang: the next delivery waits for a slot that never frees.
    let mut rig = rig(&topology, "drainlost", 1);
    let stats = rig.consumer.stats().clone();
    publisher
        .publish(Outgoing::new(&b"h"[..]).key("hang"))
        .await
        .unwrap();
    assert_eq!(rig.started.recv().await.unwrap(), "hang");
    publisher
        .publish(Outgoing::new(&b"w"[..]).key("waiting"))
        .await
        .unwrap();
    within(
        "waiting to reach the consumer",
        stats.wait_until(|s| s.received.get() >= 2),
    )
    .await;

    // No stop is asked for: only the dead connection can end the session.
    close_from_server(&rig.name).await;
    within(
        "a second session with every slot hung",
        rig.consumer.wait_for_session(2),
    )
    .await;
    assert_eq!(stats.abandoned.get(), 1);
    // waiting runs in the new session, and hang once its abandoned claim's lease is over.
    let mut seen = Vec::new();
    while seen.len() < 2 {
        seen.push(
            within("waiting and hang's takeover to start", rig.started.recv())
                .await
                .unwrap(),
        );
    }
    seen.sort();
    assert_eq!(seen, ["hang", "waiting"]);
    within("both to be acked", stats.wait_until(|s| s.acked() == 2)).await;
    assert_eq!(
        rig.effects.lock().unwrap().clone(),
        HashMap::from([("hang".into(), 1), ("waiting".into(), 1)])
    );
    within("shutdown", rig.consumer.shutdown()).await;
    topology.delete(&admin).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_returns_while_the_broker_is_unreachable() {
    let topology = fresh("down", fast_policy(3));
    // Nothing listens on port 1: every session fails to connect, and the consumer keeps
    // trying until it is stopped rather than giving up or spinning.
    let consumer = AmqpSource::new("amqp://guest:guest@127.0.0.1:1/%2f", topology)
        .consumer()
        .reconnect_backoff(Duration::from_millis(10), Duration::from_millis(40))
        .spawn(run(memory_engine("down"), |_: &AmqpDelivery| async {
            Ok::<_, String>(())
        }));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(consumer.stats().sessions.get(), 0);
    within("shutdown", consumer.shutdown()).await;
}
