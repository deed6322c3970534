//! Throughput of Redis in front of PostgreSQL, against each tier alone, in one run.
//!
//! `cargo bench -p idemq-tiered --bench tiered` (Redis on 6379 and PostgreSQL on 5432, about
//! 20 s). Two lines of business:
//! - **duplicates**: `claim_batch(100)` over keys consumed before, every answer a cache hit,
//!   against the cache tier's own `get_batch(100)` of the same keys;
//! - **new messages**: claim + complete one message at a time, 8 tasks, against the
//!   PostgreSQL store alone doing the same.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use idemq_core::{Claim, ClaimRequest, Fingerprint, IdempotencyKey, RecordKey, Scope, Store};
use idemq_postgres::PgStore;
use idemq_redis::RedisStore;
use idemq_tiered::TieredStore;

const BATCH: usize = 100;
const KEYS: usize = 20_000;
const TASKS: usize = 8;
const NEW_PER_TASK: usize = 500;
const ROUNDS: usize = 3;

fn scope() -> Scope {
    Scope::new(format!("bench-tiered/{}", uuid::Uuid::new_v4().simple())).unwrap()
}

fn req(scope: &Scope, k: String) -> ClaimRequest {
    ClaimRequest {
        key: RecordKey::new(scope.clone(), IdempotencyKey::new(k).unwrap()),
        fingerprint: Some(Fingerprint::of(b"reduce stock of item 42 by 1")),
        lease: Duration::from_secs(30),
        retention: Duration::from_secs(120),
    }
}

/// Messages per second of `tasks` copies of `body(task)` handling `msgs` in all.
async fn rate<F, Fut>(msgs: usize, tasks: usize, body: F) -> f64
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks).map(|t| tokio::spawn(body(t))).collect();
    for h in handles {
        h.await.expect("bench task panicked");
    }
    msgs as f64 / started.elapsed().as_secs_f64()
}

async fn claim_complete<S: Store>(store: &S, r: &ClaimRequest) {
    match store.claim(r).await.unwrap() {
        Claim::Acquired { token, .. } => store
            .complete(&r.key, token, None, r.retention)
            .await
            .unwrap(),
        other => panic!("expected a new key, got {other:?}"),
    }
}

fn line(name: &str, rates: &[f64]) -> f64 {
    let mean = rates.iter().sum::<f64>() / rates.len() as f64;
    let each: Vec<String> = rates.iter().map(|r| format!("{r:.0}")).collect();
    println!(
        "  {name:<44} {mean:>8.0} msgs/s  (rounds: {})",
        each.join(", ")
    );
    mean
}

#[tokio::main]
async fn main() {
    let redis = RedisStore::builder()
        .prefix("idemq-bench-tiered")
        .connect("redis://127.0.0.1:6379")
        .await
        .unwrap_or_else(|e| panic!("Redis at 127.0.0.1:6379 is required: {e}"));
    let pg = PgStore::connect("postgres://postgres@127.0.0.1:5432/test")
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at 127.0.0.1:5432 (db test) is required: {e}"));
    let tiered = Arc::new(TieredStore::new(redis.clone(), pg.clone()));
    let mut scopes = Vec::new();

    // Duplicates: KEYS consumed once, then asked about again in batches.
    let dup = scope();
    scopes.push(dup.clone());
    let reqs: Arc<Vec<ClaimRequest>> =
        Arc::new((0..KEYS).map(|i| req(&dup, format!("k{i}"))).collect());
    for chunk in reqs.chunks(BATCH) {
        for (r, c) in chunk.iter().zip(tiered.claim_batch(chunk).await.unwrap()) {
            let Claim::Acquired { token, .. } = c else {
                panic!("expected a new key, got {c:?}");
            };
            tiered
                .complete(&r.key, token, None, r.retention)
                .await
                .unwrap();
        }
    }
    println!("duplicates: {KEYS} consumed keys asked again, batches of {BATCH}, 4 tasks");
    let (mut cache, mut both) = (vec![], vec![]);
    for _ in 0..ROUNDS {
        cache.push(
            rate(KEYS, 4, |t| {
                let (redis, reqs) = (redis.clone(), reqs.clone());
                async move {
                    for chunk in reqs.chunks(BATCH).skip(t).step_by(4) {
                        let keys: Vec<RecordKey> = chunk.iter().map(|r| r.key.clone()).collect();
                        redis.get_batch(&keys).await.unwrap();
                    }
                }
            })
            .await,
        );
        both.push(
            rate(KEYS, 4, |t| {
                let (tiered, reqs) = (tiered.clone(), reqs.clone());
                async move {
                    for chunk in reqs.chunks(BATCH).skip(t).step_by(4) {
                        for c in tiered.claim_batch(chunk).await.unwrap() {
                            assert!(matches!(c, Claim::Done { .. }), "{c:?}");
                        }
                    }
                }
            })
            .await,
        );
    }
    let c = line("Redis get_batch(100) alone", &cache);
    let b = line("tiered claim_batch(100), all cache hits", &both);
    println!("  ratio tiered/cache: {:.3}", b / c);

    println!("new messages: claim + complete each, {TASKS} tasks x {NEW_PER_TASK}");
    let (mut alone, mut tier) = (vec![], vec![]);
    for _ in 0..ROUNDS {
        let s = scope();
        scopes.push(s.clone());
        alone.push(
            rate(TASKS * NEW_PER_TASK, TASKS, |t| {
                let (pg, s) = (pg.clone(), s.clone());
                async move {
                    for i in 0..NEW_PER_TASK {
                        claim_complete(&pg, &req(&s, format!("t{t}-{i}"))).await;
                    }
                }
            })
            .await,
        );
        let s = scope();
        scopes.push(s.clone());
        tier.push(
            rate(TASKS * NEW_PER_TASK, TASKS, |t| {
                let (tiered, s) = (tiered.clone(), s.clone());
                async move {
                    for i in 0..NEW_PER_TASK {
                        claim_complete(&*tiered, &req(&s, format!("t{t}-{i}"))).await;
                    }
                }
            })
            .await,
        );
    }
    let p = line("PostgreSQL store alone", &alone);
    let t = line("tiered (Redis + PostgreSQL)", &tier);
    println!("  ratio tiered/PostgreSQL: {:.3}", t / p);

    for s in &scopes {
        tiered.purge(s).await.unwrap();
    }
}
