//! A failing handler is retried through the delay tiers, then dead-lettered.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use idemq_core::adapter::Delivery as _;
use idemq_rabbitmq::headers::{
    self, ATTEMPT, ATTEMPTS, ERROR, FIRST_FAILURE, LAST_FAILURE, ORIGINAL_QUEUE, REASON,
};
use idemq_rabbitmq::{AmqpDelivery, Consumer, Outgoing, Publisher};

/// (attempt header, last error header, when) of each handler call.
type Calls = Arc<Mutex<Vec<(u32, Option<String>, Instant)>>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fails_twice_then_applies_once_after_two_delayed_retries() {
    let topology = fresh("retry", fast_policy(5));
    let (_conn, admin) = admin(&topology).await;
    let calls: Calls = Arc::default();
    let effects = Arc::new(Mutex::new(0u32));

    let (c, e) = (calls.clone(), effects.clone());
    let consumer = Consumer::new(uri(), topology.clone(), memory_engine("retry")).spawn(
        move |d: &AmqpDelivery| {
            let (c, e) = (c.clone(), e.clone());
            let attempt = d.attempt();
            let last = d.last_error().map(str::to_owned);
            async move {
                let n = {
                    let mut calls = c.lock().unwrap();
                    calls.push((attempt, last, Instant::now()));
                    calls.len()
                };
                if n <= 2 {
                    return Err(format!("boom {n}"));
                }
                *e.lock().unwrap() += 1;
                Ok(())
            }
        },
    );
    let publisher = Publisher::on_channel(admin.clone(), &topology)
        .await
        .unwrap();
    publisher
        .publish(Outgoing::new(&b"reduce 1"[..]).key("order-1"))
        .await
        .unwrap();

    eventually("the third attempt to be acked", || {
        consumer.stats().acked.get() == 1
    })
    .await;
    let calls = calls.lock().unwrap().clone();
    let attempts: Vec<u32> = calls.iter().map(|c| c.0).collect();
    assert_eq!(attempts, [1, 2, 3], "attempt header of each call");
    assert_eq!(calls[1].1.as_deref(), Some("boom 1"));
    assert_eq!(calls[2].1.as_deref(), Some("boom 2"));
    // Each retry waited at least its tier's TTL: 200 ms, then 400 ms.
    assert!(calls[1].2 - calls[0].2 >= Duration::from_millis(200));
    assert!(calls[2].2 - calls[1].2 >= Duration::from_millis(400));
    assert_eq!(*effects.lock().unwrap(), 1);
    assert_eq!(consumer.stats().retried.get(), 2);
    assert_eq!(consumer.stats().dead_lettered.get(), 0);

    consumer.shutdown().await.unwrap();
    topology.delete(&admin).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn always_failing_lands_in_the_dlq_after_exactly_max_attempts() {
    let topology = fresh("exhaust", fast_policy(3));
    let (_conn, admin) = admin(&topology).await;
    let mut dlq = watch(&admin, topology.dead_letter_queue()).await;
    let calls = Arc::new(Mutex::new(Vec::new()));

    let c = calls.clone();
    let consumer = Consumer::new(uri(), topology.clone(), memory_engine("exhaust")).spawn(
        move |d: &AmqpDelivery| {
            c.lock().unwrap().push(d.attempt());
            let n = d.attempt();
            async move { Err::<(), _>(format!("always fails ({n})")) }
        },
    );
    let publisher = Publisher::on_channel(admin.clone(), &topology)
        .await
        .unwrap();
    publisher
        .publish(Outgoing::new(&b"x"[..]).key("doomed"))
        .await
        .unwrap();

    let dead = next(&mut dlq).await;
    let h = dead.properties.headers().as_ref();
    assert_eq!(*calls.lock().unwrap(), [1, 2, 3]);
    assert_eq!(headers::text(h, REASON), Some("retries-exhausted"));
    assert_eq!(headers::int(h, ATTEMPTS), Some(3));
    assert_eq!(headers::int(h, ATTEMPT), Some(3));
    assert!(headers::text(h, ERROR)
        .unwrap()
        .contains("always fails (3)"));
    assert_eq!(headers::text(h, ORIGINAL_QUEUE), Some(topology.queue()));
    let first = headers::int(h, FIRST_FAILURE).unwrap();
    let last = headers::int(h, LAST_FAILURE).unwrap();
    assert!(first > 0 && first <= last, "{first} <= {last}");
    assert_eq!(
        dead.properties.message_id().as_ref().unwrap().as_str(),
        "doomed"
    );
    assert_eq!(dead.data, b"x");

    eventually("the original to be acked", || {
        consumer.stats().dead_lettered.get() == 1
    })
    .await;
    assert_eq!(consumer.stats().retried.get(), 2);
    consumer.shutdown().await.unwrap();
    topology.delete(&admin).await.unwrap();
}
