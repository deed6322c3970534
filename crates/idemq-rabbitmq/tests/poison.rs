//! Messages that can never be handled go to the DLQ at once, with the reason.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use common::*;
use idemq_rabbitmq::headers::{self, ATTEMPTS, ERROR, ORIGINAL_QUEUE, REASON};
use idemq_rabbitmq::lapin::options::BasicPublishOptions;
use idemq_rabbitmq::lapin::BasicProperties;
use idemq_rabbitmq::{decoded, AmqpDelivery, Consumer, Outgoing, Publisher};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unkeyable_message_is_dead_lettered_at_once() {
    let topology = fresh("unkeyable", fast_policy(5));
    let (_conn, admin) = admin(&topology).await;
    let mut dlq = watch(&admin, topology.dead_letter_queue()).await;
    let calls = Arc::new(AtomicU32::new(0));

    let c = calls.clone();
    let consumer = Consumer::new(uri(), topology.clone(), memory_engine("unkeyable")).spawn(
        move |_: &AmqpDelivery| {
            c.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, String>(()) }
        },
    );
    // A producer that forgot the message id.
    admin
        .basic_publish(
            topology.exchange().into(),
            topology.queue().into(),
            BasicPublishOptions::default(),
            b"no id",
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();

    let dead = next(&mut dlq).await;
    let h = dead.properties.headers().as_ref();
    assert_eq!(headers::text(h, REASON), Some("unkeyable"));
    assert!(headers::text(h, ERROR).unwrap().contains("message id"));
    assert_eq!(headers::int(h, ATTEMPTS), Some(1));
    assert_eq!(headers::text(h, ORIGINAL_QUEUE), Some(topology.queue()));
    assert_eq!(dead.data, b"no id");
    eventually("the original to be acked", || {
        consumer.stats().dead_lettered.get() == 1
    })
    .await;
    assert_eq!(calls.load(Ordering::SeqCst), 0, "the handler never ran");
    assert_eq!(consumer.stats().retried.get(), 0);
    consumer.shutdown().await.unwrap();
    topology.delete(&admin).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_message_is_dead_lettered_at_once() {
    let topology = fresh("undecodable", fast_policy(5));
    let (_conn, admin) = admin(&topology).await;
    let mut dlq = watch(&admin, topology.dead_letter_queue()).await;
    let handled = Arc::new(AtomicU32::new(0));

    let h = handled.clone();
    let consumer =
        Consumer::new(uri(), topology.clone(), memory_engine("undecodable")).spawn(decoded(
            |d: &AmqpDelivery| {
                let text = std::str::from_utf8(d.data()).map_err(|e| e.to_string())?;
                text.parse::<u32>()
                    .map_err(|e| format!("bad quantity {text:?}: {e}"))
            },
            move |qty: u32, _: &AmqpDelivery| {
                h.fetch_add(qty, Ordering::SeqCst);
                async { Ok::<_, String>(()) }
            },
        ));
    let publisher = Publisher::on_channel(admin.clone(), &topology)
        .await
        .unwrap();
    publisher
        .publish_all([
            Outgoing::new(&b"not a number"[..]).key("o-1"),
            Outgoing::new(&b"5"[..]).key("o-2"),
        ])
        .await
        .unwrap();

    let dead = next(&mut dlq).await;
    let h = dead.properties.headers().as_ref();
    assert_eq!(headers::text(h, REASON), Some("undecodable"));
    assert!(headers::text(h, ERROR).unwrap().contains("bad quantity"));
    assert_eq!(
        dead.properties.message_id().as_ref().unwrap().as_str(),
        "o-1"
    );
    eventually("the good message to be handled", || {
        consumer.stats().acked.get() == 1
    })
    .await;
    eventually("the poison to be acked", || {
        consumer.stats().dead_lettered.get() == 1
    })
    .await;
    assert_eq!(handled.load(Ordering::SeqCst), 5);
    assert_eq!(consumer.stats().retried.get(), 0);
    consumer.shutdown().await.unwrap();
    topology.delete(&admin).await.unwrap();
}
