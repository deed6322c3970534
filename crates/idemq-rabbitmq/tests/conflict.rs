//! A message id reused for another payload is dead-lettered as a conflict, with both
//! fingerprints in its headers.

mod common;

use common::*;
use idemq_consumer::run;
use idemq_core::Fingerprint;
use idemq_rabbitmq::headers::{self, EXISTING_FINGERPRINT, INCOMING_FINGERPRINT, REASON};
use idemq_rabbitmq::{AmqpDelivery, AmqpSource, Outgoing, Publisher};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_message_id_is_a_conflict_with_both_fingerprints() {
    let topology = fresh("conflict", fast_policy(3));
    let (_conn, admin) = admin(&topology).await;
    let mut dlq = watch(&admin, topology.dead_letter_queue()).await;
    let publisher = Publisher::on_channel(admin.clone(), &topology)
        .await
        .unwrap();
    // Keyed by message id, so the payload is fingerprinted.
    let consumer = AmqpSource::new(uri(), topology.clone())
        .consumer()
        .spawn(run(memory_engine("conflict"), |_: &AmqpDelivery| async {
            Ok::<_, String>(())
        }));
    let stats = consumer.stats().clone();
    publisher
        .publish(Outgoing::new(&b"first"[..]).key("reused"))
        .await
        .unwrap();
    within(
        "the first to be processed",
        stats.wait_until(|s| s.processed.get() == 1),
    )
    .await;
    publisher
        .publish(Outgoing::new(&b"second"[..]).key("reused"))
        .await
        .unwrap();
    let d = next(&mut dlq).await;
    let h = d.properties.headers().as_ref();
    assert_eq!(headers::text(h, REASON), Some("conflict"));
    assert_eq!(
        headers::text(h, EXISTING_FINGERPRINT),
        Some(Fingerprint::of(b"first").to_hex().as_str())
    );
    assert_eq!(
        headers::text(h, INCOMING_FINGERPRINT),
        Some(Fingerprint::of(b"second").to_hex().as_str())
    );
    consumer.shutdown().await;
    topology.delete(&admin).await.unwrap();
}
