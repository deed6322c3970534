//! The publisher stamps every message with its key and makes it persistent.

mod common;

use common::*;
use idemq_rabbitmq::{Outgoing, Publisher};

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
