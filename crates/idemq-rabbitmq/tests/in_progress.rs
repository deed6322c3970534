//! A duplicate that arrives while its key is being handled waits in the delay queue: it is
//! never run concurrently, never spun on, and is acked as a duplicate once the first is done.
//! Also: what the publisher stamps on every message.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use common::*;
use idemq_rabbitmq::{AmqpDelivery, Consumer, Outgoing, Publisher};
use tokio::sync::{mpsc, Semaphore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_in_progress_waits_in_the_delay_queue() {
    let topology = fresh("inprogress", fast_policy(5));
    let (_conn, admin) = admin(&topology).await;
    let runs = Arc::new(AtomicU32::new(0));
    let running = Arc::new(AtomicU32::new(0));
    let most_at_once = Arc::new(AtomicU32::new(0));
    let gate = Arc::new(Semaphore::new(0));
    let (started_tx, mut started) = mpsc::unbounded_channel();

    let (r, now, most, g) = (
        runs.clone(),
        running.clone(),
        most_at_once.clone(),
        gate.clone(),
    );
    let consumer = Consumer::new(uri(), topology.clone(), memory_engine("inprogress"))
        .concurrency(4)
        .spawn(move |_: &AmqpDelivery| {
            let (r, now, most, g, tx) = (
                r.clone(),
                now.clone(),
                most.clone(),
                g.clone(),
                started_tx.clone(),
            );
            async move {
                r.fetch_add(1, Ordering::SeqCst);
                let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(n, Ordering::SeqCst);
                let _ = tx.send(());
                g.acquire().await.unwrap().forget();
                now.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, String>(())
            }
        });
    let publisher = Publisher::on_channel(admin.clone(), &topology)
        .await
        .unwrap();
    publisher
        .publish(Outgoing::new(&b"a"[..]).key("same"))
        .await
        .unwrap();
    started.recv().await.unwrap();
    publisher
        .publish(Outgoing::new(&b"a"[..]).key("same"))
        .await
        .unwrap();

    // The copy goes round the delay queue (100 ms) while the first run holds the key.
    let stats = consumer.stats();
    eventually("the copy to be redelivered twice", || {
        stats.redelivered.get() >= 2
    })
    .await;
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the copy never ran");
    gate.add_permits(1);
    eventually("both to be acked", || stats.acked.get() == 2).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the copy was a duplicate");
    assert_eq!(most_at_once.load(Ordering::SeqCst), 1);
    assert_eq!(stats.retried.get(), 0, "waiting does not spend attempts");
    consumer.shutdown().await.unwrap();
    topology.delete(&admin).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_publisher_stamps_a_key_and_persistence() {
    let topology = fresh("stamp", fast_policy(2));
    let (_conn, admin) = admin(&topology).await;
    let mut work = watch(&admin, topology.queue()).await;
    let publisher = Publisher::on_channel(admin.clone(), &topology)
        .await
        .unwrap();
    let generated = publisher.publish(Outgoing::new(&b"x"[..])).await.unwrap();
    let business = publisher
        .publish(
            Outgoing::new(&b"y"[..])
                .key("order-7")
                .header("tenant", "eu"),
        )
        .await
        .unwrap();
    assert_eq!(business, "order-7");
    let id = uuid::Uuid::parse_str(&generated).unwrap();
    assert_eq!(id.get_version_num(), 7, "a time-ordered UUID v7");

    for want in [generated.as_str(), "order-7"] {
        let d = next(&mut work).await;
        assert_eq!(d.properties.message_id().as_ref().unwrap().as_str(), want);
        assert_eq!(*d.properties.delivery_mode(), Some(2), "persistent");
    }
    assert!(publisher
        .publish(Outgoing::new(&b"z"[..]).key(""))
        .await
        .is_err());
    topology.delete(&admin).await.unwrap();
}
