//! A handler that never returns: after the drain timeout the consumer abandons it, so it
//! still reconnects (and still shuts down), and the abandoned message is taken over once
//! its claim's lease runs out, never run alongside it.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use idemq_core::store::MemoryStore;
use idemq_core::{Engine, EngineConfig, KeyStrategy, Message as _, Scope};
use idemq_rabbitmq::lapin::options::QueueDeclareOptions;
use idemq_rabbitmq::lapin::types::FieldTable;
use idemq_rabbitmq::lapin::{Channel, Connection};
use idemq_rabbitmq::{AmqpDelivery, Consumer, ConsumerHandle, Outgoing, Publisher, Topology};
use tokio::sync::mpsc;

/// How many messages of `queue` wait to be delivered.
async fn ready(channel: &Channel, queue: &str) -> u32 {
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(queue.into(), passive, FieldTable::default())
        .await
        .unwrap()
        .message_count()
}

const DRAIN: Duration = Duration::from_millis(200);
/// Short enough for the test to see the takeover, long enough (against a 200 ms drain and a
/// 50 ms reconnect) that the redelivered copy meets the abandoned claim still live.
const LEASE: Duration = Duration::from_secs(1);

/// A consumer whose handler, the first time it sees the key `hang`, never returns; every run
/// reports its key on `started` and, once done, counts an effect.
struct Rig {
    consumer: ConsumerHandle,
    effects: Arc<Mutex<HashMap<String, u32>>>,
    started: mpsc::UnboundedReceiver<String>,
}

fn rig(topology: &Topology, scope: &str, concurrency: usize) -> Rig {
    let effects = Arc::new(Mutex::new(HashMap::new()));
    let (tx, started) = mpsc::unbounded_channel();
    let hung = Arc::new(AtomicBool::new(false));
    let engine = Engine::new(
        MemoryStore::new(),
        EngineConfig::new(Scope::new(scope).unwrap()).lease(LEASE),
        KeyStrategy::MessageId,
    );
    let e = effects.clone();
    let consumer = Consumer::new(uri(), topology.clone(), engine)
        .concurrency(concurrency)
        .drain_timeout(DRAIN)
        .reconnect_backoff(Duration::from_millis(50), Duration::from_secs(1))
        .spawn(move |d: &AmqpDelivery| {
            let key = d.message_id().unwrap().to_owned();
            let hang = key == "hang" && !hung.swap(true, Ordering::SeqCst);
            let (e, tx) = (e.clone(), tx.clone());
            async move {
                let _ = tx.send(key.clone());
                if hang {
                    std::future::pending::<()>().await;
                }
                *e.lock().unwrap().entry(key).or_insert(0) += 1;
                Ok::<_, String>(())
            }
        });
    Rig {
        consumer,
        effects,
        started,
    }
}

/// A fresh queue `name` and a [`rig`] consuming it, with `hang` published and its handler
/// stuck. The admin connection is returned so it stays open.
async fn hung(name: &str, concurrency: usize) -> (Topology, Connection, Channel, Publisher, Rig) {
    let topology = fresh(name, fast_policy(5));
    let (conn, admin) = admin(&topology).await;
    let publisher = Publisher::on_channel(admin.clone(), &topology)
        .await
        .unwrap();
    let mut rig = rig(&topology, name, concurrency);
    within("the first session", rig.consumer.wait_for_session(1)).await;
    publisher
        .publish(Outgoing::new(&b"h"[..]).key("hang"))
        .await
        .unwrap();
    assert_eq!(
        within("hang to start", rig.started.recv()).await.unwrap(),
        "hang"
    );
    (topology, conn, admin, publisher, rig)
}

async fn a_hung_handler_does_not_block_reconnection(server_side: bool) {
    let name = if server_side { "drainsrv" } else { "draincli" };
    let (topology, _conn, admin, publisher, mut rig) = hung(name, 8).await;

    // The connection dies while hang's handler is stuck: the consumer gives it the drain
    // timeout, aborts it, and reconnects.
    if server_side {
        close_from_server(rig.consumer.connection_name()).await;
    } else {
        rig.consumer.disconnect().await;
    }
    within(
        "a second session despite the hung handler",
        rig.consumer.wait_for_session(2),
    )
    .await;
    let stats = rig.consumer.stats();
    assert_eq!(stats.abandoned.get(), 1, "the hung handler was abandoned");

    publisher
        .publish(Outgoing::new(&b"a"[..]).key("after"))
        .await
        .unwrap();
    // Both "after" and the redelivered hang run in the new session; hang only once the
    // abandoned claim's lease has run out, so its copy is first deferred at least once.
    let mut seen = Vec::new();
    while seen.len() < 2 {
        seen.push(
            within("after and hang's takeover to start", rig.started.recv())
                .await
                .unwrap(),
        );
    }
    seen.sort();
    assert_eq!(seen, ["after", "hang"]);
    eventually("both to be acked", || stats.acked.get() == 2).await;
    assert!(
        stats.redelivered.get() >= 1,
        "hang's copy waited in the delay queue while the abandoned claim was live"
    );
    let effects = rig.effects.lock().unwrap().clone();
    assert_eq!(
        effects,
        HashMap::from([("hang".into(), 1), ("after".into(), 1)])
    );
    within("shutdown", rig.consumer.shutdown()).await.unwrap();
    topology.delete(&admin).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_close_abandons_a_hung_handler_and_reconnects() {
    a_hung_handler_does_not_block_reconnection(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_side_close_abandons_a_hung_handler_and_reconnects() {
    a_hung_handler_does_not_block_reconnection(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_abandons_a_hung_handler_and_requeues_its_message() {
    let (topology, _conn, admin, _publisher, rig) = hung("drainstop", 8).await;

    within("shutdown despite the hung handler", rig.consumer.shutdown())
        .await
        .unwrap();
    // Never acked, so closing the connection gave it back to the queue.
    let mut work = watch(&admin, topology.queue()).await;
    let back = next(&mut work).await;
    assert_eq!(
        back.properties.message_id().as_ref().unwrap().as_str(),
        "hang"
    );
    assert!(back.redelivered);
    assert!(rig.effects.lock().unwrap().is_empty());
    topology.delete(&admin).await.unwrap();
}

/// Publishes `waiting` and waits until the broker has handed it to the consumer, whose
/// only handler slot `hang` holds.
async fn deliver_waiting(publisher: &Publisher, admin: &Channel, topology: &Topology) {
    publisher
        .publish(Outgoing::new(&b"w"[..]).key("waiting"))
        .await
        .unwrap();
    within("waiting to be delivered", async {
        while ready(admin, topology.queue()).await > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_not_blocked_by_hung_handlers_filling_the_concurrency() {
    // One handler slot, taken by hang: the next delivery waits for a slot that never frees.
    let (topology, _conn, admin, publisher, mut rig) = hung("drainfull", 1).await;
    deliver_waiting(&publisher, &admin, &topology).await;

    within("shutdown despite the hung handler", rig.consumer.shutdown())
        .await
        .unwrap();
    // Both unacked, so both are back in the queue; "waiting" never started.
    let mut work = watch(&admin, topology.queue()).await;
    let mut back = Vec::new();
    for _ in 0..2 {
        let d = next(&mut work).await;
        back.push(d.properties.message_id().as_ref().unwrap().to_string());
    }
    back.sort();
    assert_eq!(back, ["hang", "waiting"]);
    assert!(rig.started.try_recv().is_err(), "waiting never ran");
    assert!(rig.effects.lock().unwrap().is_empty());
    topology.delete(&admin).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_connection_is_noticed_while_every_handler_slot_hangs() {
    let (topology, _conn, admin, publisher, mut rig) = hung("drainlost", 1).await;
    deliver_waiting(&publisher, &admin, &topology).await;

    // No stop is asked for: only the dead connection can end the session.
    close_from_server(rig.consumer.connection_name()).await;
    within(
        "a second session with every slot hung",
        rig.consumer.wait_for_session(2),
    )
    .await;
    let stats = rig.consumer.stats();
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
    eventually("both to be acked", || stats.acked.get() == 2).await;
    assert_eq!(
        rig.effects.lock().unwrap().clone(),
        HashMap::from([("hang".into(), 1), ("waiting".into(), 1)])
    );
    within("shutdown", rig.consumer.shutdown()).await.unwrap();
    topology.delete(&admin).await.unwrap();
}
