//! The consumer group on a real Kafka-protocol broker (tansu) beyond the conformance suite:
//! a consumer killed before it committed, and a rebalance mid-stream.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use idemq_consumer::{run, ConsumerHandle, Stats};
use idemq_core::adapter::RetryPolicy;
use idemq_core::{Engine, EngineConfig, Message, Scope};
use idemq_kafka::{keys, KafkaDelivery, KafkaSource, Outgoing};
use idemq_redis::RedisStore;

/// How many times the handler ran per payload, over every consumer of a test.
#[derive(Clone, Default)]
struct Runs(Arc<Mutex<HashMap<String, u32>>>);

impl Runs {
    fn of(&self, key: &str) -> u32 {
        self.0.lock().unwrap().get(key).copied().unwrap_or(0)
    }
    fn total(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

struct Group {
    topic: String,
    group: String,
    scope: Scope,
    runs: Runs,
}

impl Group {
    async fn new(partitions: i32) -> Self {
        Self {
            topic: topic("grp", partitions).await,
            group: fresh("g"),
            scope: Scope::new(format!("kafka/{}", uuid::Uuid::new_v4().simple())).unwrap(),
            runs: Runs::default(),
        }
    }

    /// A member of the group on Redis, keyed by record key, committing every `commit`.
    async fn member(&self, commit: Duration) -> ConsumerHandle {
        let store = RedisStore::connect("redis://127.0.0.1:6379")
            .await
            .expect("Redis at 127.0.0.1:6379 is required");
        let engine = Engine::new(
            store,
            EngineConfig::new(self.scope.clone()),
            keys::record_key(),
        );
        let policy = RetryPolicy {
            initial_interval: Duration::from_millis(100),
            redeliver_after: Duration::from_millis(100),
            ..RetryPolicy::default()
        };
        let runs = self.runs.clone();
        let h = KafkaSource::new(bootstrap(), &self.topic, &self.group, policy)
            .unwrap()
            .commit_interval(commit)
            .consumer()
            .spawn(run(engine, move |d: &KafkaDelivery| {
                let key = String::from_utf8_lossy(d.payload()).into_owned();
                *runs.0.lock().unwrap().entry(key).or_default() += 1;
                async { Ok::<_, String>(()) }
            }));
        h.wait_for_session(1).await;
        h
    }

    async fn send(&self, keys: impl IntoIterator<Item = String>) {
        let p = producer().await;
        for k in keys {
            p.send(Outgoing::new(&self.topic, k.clone()).key(k))
                .await
                .unwrap();
        }
    }
}

async fn until(what: &str, stats: &Stats, f: impl Fn(&Stats) -> bool) {
    within(90, what, stats.wait_until(f)).await;
}

/// A consumer applies ten records and is killed before it commits any (its commit interval
/// is an hour); the next member of the group resumes from the last commit, the start, and
/// reads all ten again: each is a duplicate, applied once in all, and the records sent
/// afterwards are applied too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_killed_before_it_committed_is_replayed_and_each_record_applied_once() {
    let g = Group::new(2).await;
    let first: Vec<String> = (0..10).map(|i| format!("early-{i}")).collect();
    g.send(first.clone()).await;
    let a = g.member(Duration::from_secs(3600)).await;
    until("the first ten", a.stats(), |s| s.processed.get() == 10).await;
    a.kill().await;

    let b = g.member(Duration::from_millis(50)).await;
    until("the replay", b.stats(), |s| s.duplicates.get() == 10).await;
    g.send((0..5).map(|i| format!("late-{i}"))).await;
    until("the later records", b.stats(), |s| s.processed.get() == 5).await;
    b.shutdown().await;
    for k in &first {
        assert_eq!(g.runs.of(k), 1, "{k} applied once");
    }
    assert_eq!(g.runs.total(), 15);
}

/// Two members share four partitions; one leaves mid-stream (a rebalance): its partitions
/// go to the other, which resumes from their commits, and every record is applied once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_members_one_leaving_mid_stream_apply_each_record_once() {
    let g = Group::new(4).await;
    let a = g.member(Duration::from_millis(50)).await;
    let b = g.member(Duration::from_millis(50)).await;
    let keys: Vec<String> = (0..200).map(|i| format!("order-{i}")).collect();
    g.send(keys[..100].to_vec()).await;
    // Either member may be the one applying: wake on both.
    let some = |_: &Stats| g.runs.total() >= 60;
    within(90, "some records applied", async {
        tokio::select! {
            _ = a.stats().wait_until(some) => {}
            _ = b.stats().wait_until(some) => {}
        }
    })
    .await;
    a.shutdown().await;
    g.send(keys[100..].to_vec()).await;
    until("every record", b.stats(), |_| g.runs.total() == 200).await;
    b.shutdown().await;
    for k in &keys {
        assert_eq!(g.runs.of(k), 1, "{k} applied once");
    }
}
