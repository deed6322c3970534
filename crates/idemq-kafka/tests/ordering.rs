//! The order records run in, on a real Kafka-protocol broker (tansu): one record of a
//! partition at a time by default, one per ordering key when asked, and a record retried
//! in place keeping its place.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use idemq_consumer::{run, ConsumerHandle};
use idemq_core::adapter::{Delivery, RetryPolicy};
use idemq_core::{Engine, EngineConfig, Message, Scope};
use idemq_kafka::{keys, KafkaDelivery, KafkaSource, Ordering, Outgoing, Retries};
use idemq_redis::RedisStore;

/// A handler start: where the record came from and what it was.
#[derive(Debug, Clone)]
struct Start {
    partition: i32,
    offset: i64,
    key: String,
    payload: String,
    attempt: u32,
}

/// What the handlers saw: every start in order, and the most running at once per lane.
#[derive(Default)]
struct Seen {
    starts: Vec<Start>,
    running: HashMap<String, usize>,
    most: HashMap<String, usize>,
}

#[derive(Clone, Default)]
struct Log(Arc<Mutex<Seen>>);

impl Log {
    fn begin(&self, start: Start, lanes: &[String]) {
        let mut seen = self.0.lock().unwrap();
        seen.starts.push(start);
        for lane in lanes {
            let n = seen.running.entry(lane.clone()).or_default();
            *n += 1;
            let n = *n;
            let most = seen.most.entry(lane.clone()).or_default();
            *most = (*most).max(n);
        }
    }

    fn end(&self, lanes: &[String]) {
        let mut seen = self.0.lock().unwrap();
        for lane in lanes {
            *seen.running.get_mut(lane).expect("begun") -= 1;
        }
    }

    fn starts(&self) -> Vec<Start> {
        self.0.lock().unwrap().starts.clone()
    }

    fn most(&self, lane: &str) -> usize {
        self.0.lock().unwrap().most.get(lane).copied().unwrap_or(0)
    }
}

/// Consumes `topic` on Redis, keyed by message id, until `n` records are processed, with a
/// handler that takes `work` and fails the payloads in `failing` on their first two
/// attempts; answers what the handlers saw.
async fn consume(
    topic: &str,
    n: u64,
    ordering: Ordering,
    retries: Retries,
    work: Duration,
    failing: &'static [&'static str],
) -> Log {
    let log = Log::default();
    let h = consumer(topic, ordering, retries, work, failing, &log).await;
    within(
        90,
        "every record",
        h.stats().wait_until(|s| s.processed.get() == n),
    )
    .await;
    h.shutdown().await;
    log
}

async fn consumer(
    topic: &str,
    ordering: Ordering,
    retries: Retries,
    work: Duration,
    failing: &'static [&'static str],
    log: &Log,
) -> ConsumerHandle {
    let store = RedisStore::connect("redis://127.0.0.1:6379")
        .await
        .expect("Redis at 127.0.0.1:6379 is required");
    let scope = Scope::new(format!("kafka/{}", uuid::Uuid::new_v4().simple())).unwrap();
    let engine = Engine::new(store, EngineConfig::new(scope), keys::message_id());
    let policy = RetryPolicy {
        initial_interval: Duration::from_millis(100),
        redeliver_after: Duration::from_millis(100),
        max_attempts: 5,
        ..RetryPolicy::default()
    };
    let log = log.clone();
    let h = KafkaSource::new(bootstrap(), topic, fresh("g"), policy)
        .unwrap()
        .ordering(ordering)
        .retries(retries)
        .consumer()
        .concurrency(8)
        .spawn(run(engine, move |d: &KafkaDelivery| {
            let start = Start {
                partition: d.partition(),
                offset: d.offset(),
                key: String::from_utf8_lossy(d.key().unwrap_or_default()).into_owned(),
                payload: String::from_utf8_lossy(d.payload()).into_owned(),
                attempt: d.attempt(),
            };
            let lanes = vec![
                "all".to_owned(),
                format!("p{}", start.partition),
                format!("p{}/{}", start.partition, start.key),
            ];
            let fail = failing.contains(&start.payload.as_str()) && start.attempt <= 2;
            log.begin(start, &lanes);
            let log = log.clone();
            async move {
                tokio::time::sleep(work).await;
                log.end(&lanes);
                if fail {
                    Err("fails twice".to_owned())
                } else {
                    Ok(())
                }
            }
        }));
    h.wait_for_session(1).await;
    h
}

async fn send(topic: &str, records: impl IntoIterator<Item = (String, String)>) {
    let p = producer().await;
    for (key, payload) in records {
        p.send(Outgoing::new(topic, payload).key(key))
            .await
            .unwrap();
    }
}

/// Asserts the records of each group (by `lane`) started in offset order, retries aside.
fn assert_offset_order(starts: &[Start], lane: impl Fn(&Start) -> String) {
    let mut last: HashMap<String, i64> = HashMap::new();
    for s in starts.iter().filter(|s| s.attempt == 1) {
        let prev = last.insert(lane(s), s.offset);
        assert!(
            prev.is_none_or(|p| p < s.offset),
            "{s:?} started after offset {prev:?} of its lane"
        );
    }
}

/// Sixty records over six keys on two partitions: each partition runs one record at a
/// time, in offset order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_order_runs_one_record_of_a_partition_at_a_time_in_offset_order() {
    let topic = topic("ord-part", 2).await;
    send(
        &topic,
        (0..60).map(|i| (format!("k{}", i % 6), format!("r{i}"))),
    )
    .await;
    let log = consume(
        &topic,
        60,
        Ordering::Partition,
        Retries::Topic,
        Duration::from_millis(3),
        &[],
    )
    .await;
    let starts = log.starts();
    assert_eq!(starts.len(), 60);
    assert_offset_order(&starts, |s| format!("p{}", s.partition));
    assert_eq!(log.most("p0"), 1, "partition 0 ran one record at a time");
    assert_eq!(log.most("p1"), 1, "partition 1 ran one record at a time");
}

/// Forty records of four keys on one partition, ordered by record key: each key runs one
/// record at a time in offset order, and the keys run side by side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_order_runs_one_record_of_a_key_at_a_time_and_keys_side_by_side() {
    let topic = topic("ord-key", 1).await;
    send(
        &topic,
        (0..40).map(|i| (format!("k{}", i % 4), format!("r{i}"))),
    )
    .await;
    let log = consume(
        &topic,
        40,
        Ordering::record_key(),
        Retries::Topic,
        Duration::from_millis(20),
        &[],
    )
    .await;
    let starts = log.starts();
    assert_eq!(starts.len(), 40);
    assert_offset_order(&starts, |s| s.key.clone());
    for k in 0..4 {
        assert_eq!(log.most(&format!("p0/k{k}")), 1, "k{k} ran one at a time");
    }
    assert!(
        log.most("p0") > 1,
        "keys of one partition ran side by side: at most {} at once",
        log.most("p0")
    );
}

/// Ten records on one partition, the fourth failing twice, retried in place: it runs three
/// times before the fifth starts, so the partition keeps its order through the retries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_retried_in_place_keeps_its_place_in_partition_order() {
    let topic = topic("ord-inplace", 1).await;
    send(&topic, (0..10).map(|i| (format!("k{i}"), format!("r{i}")))).await;
    let log = consume(
        &topic,
        10,
        Ordering::Partition,
        Retries::InPlace,
        Duration::from_millis(1),
        &["r3"],
    )
    .await;
    let runs: Vec<(String, u32)> = log
        .starts()
        .into_iter()
        .map(|s| (s.payload, s.attempt))
        .collect();
    let mut expected: Vec<(String, u32)> = (0..3).map(|i| (format!("r{i}"), 1)).collect();
    expected.extend((1..=3).map(|a| ("r3".to_owned(), a)));
    expected.extend((4..10).map(|i| (format!("r{i}"), 1)));
    assert_eq!(runs, expected);
}

/// A handler fails while its consumer shuts down, so its record is retried in place after
/// the session is gone: the record is left unsettled and uncommitted, and the group's next
/// member reads it again and applies it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_retried_in_place_during_a_shutdown_goes_to_the_next_member() {
    let topic = topic("ord-drain", 1).await;
    send(&topic, [("k0".to_owned(), "r0".to_owned())]).await;
    let group = fresh("g");
    let store = RedisStore::connect("redis://127.0.0.1:6379")
        .await
        .expect("Redis at 127.0.0.1:6379 is required");
    let scope = Scope::new(format!("kafka/{}", uuid::Uuid::new_v4().simple())).unwrap();
    let member = |fail: bool, started: Arc<tokio::sync::Notify>| {
        let engine = Engine::new(
            store.clone(),
            EngineConfig::new(scope.clone()),
            keys::message_id(),
        );
        KafkaSource::new(bootstrap(), &topic, &group, RetryPolicy::default())
            .unwrap()
            .retries(Retries::InPlace)
            .consumer()
            .spawn(run(engine, move |_: &KafkaDelivery| {
                started.notify_one();
                async move {
                    if fail {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        return Err("fails as its consumer shuts down".to_owned());
                    }
                    Ok(())
                }
            }))
    };
    let started = Arc::new(tokio::sync::Notify::new());
    let first = member(true, started.clone());
    within(90, "the first run", started.notified()).await;
    first.shutdown().await;

    let second = member(false, Arc::new(tokio::sync::Notify::new()));
    within(
        90,
        "the record again",
        second.stats().wait_until(|s| s.processed.get() == 1),
    )
    .await;
    second.shutdown().await;
}
