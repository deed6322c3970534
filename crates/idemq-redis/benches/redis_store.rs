//! Throughput of the Redis store against raw `EVALSHA` calls of the same scripts, in one run.
//!
//! `cargo bench -p idemq-redis --bench redis_store` (Redis on 127.0.0.1:6379, or `REDIS_URL`).
//! Sizes: `IDEMQ_BENCH_MSGS` (single path, default 50000), `IDEMQ_BENCH_TASKS` (32),
//! `IDEMQ_BENCH_SERIAL_MSGS` (one-task comparison, 3000), `IDEMQ_BENCH_BATCH_MSGS` (200000),
//! `IDEMQ_BENCH_BATCH_TASKS` (4), `IDEMQ_BENCH_ROUNDS` (2: every measurement is repeated,
//! raw and store alternating, and the mean reported).
//!
//! The engine runs with the heartbeat off (`EngineConfig::heartbeat(None)`): it only adds a
//! timer per message, and a handler this short never reaches it.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use idemq_core::{
    Claim, ClaimRequest, Engine, EngineConfig, Envelope, Fingerprint, IdempotencyKey, KeyStrategy,
    Outcome, RecordKey, Scope, Store,
};
use idemq_redis::{Completion, RedisStore};
use redis::aio::ConnectionManager;
use redis::{Script, Value};

const LEASE: Duration = Duration::from_secs(60);
/// Short, so Redis drops the bench's records soon even if the final purge is interrupted.
const RETENTION: Duration = Duration::from_secs(300);
/// The bench's own key prefix, so cleanup is one SCAN however many scopes it used.
const PREFIX: &str = "idemq-bench";
const PAYLOAD: &[u8] = b"reduce stock of item 42 by 1";

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn scope() -> Scope {
    Scope::new(format!("bench/{}", uuid::Uuid::new_v4().simple())).unwrap()
}

/// Runs `tasks` copies of `body(task)` at once and answers messages per second.
async fn measure<F, Fut>(msgs: usize, tasks: usize, body: F) -> f64
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

/// The same scripts the store runs, called directly.
struct Raw {
    conn: ConnectionManager,
    claim: Script,
    complete: Script,
    fingerprint: [u8; 32],
}

impl Raw {
    fn key(scope: &Scope, key: &str) -> String {
        format!("{PREFIX}:{{{scope}}}:{key}")
    }

    async fn eval(&self, script: &Script, keys: &[String], args: &[&[u8]]) -> Value {
        let mut inv = script.prepare_invoke();
        for k in keys {
            inv.key(k);
        }
        for a in args {
            inv.arg(*a);
        }
        inv.invoke_async(&mut self.conn.clone()).await.unwrap()
    }

    /// Claims and completes `keys` with one script call each.
    async fn claim_complete(&self, keys: &[String]) {
        let (lease, retention) = (
            LEASE.as_millis().to_string(),
            RETENTION.as_millis().to_string(),
        );
        let mut args: Vec<&[u8]> = Vec::with_capacity(keys.len() * 3);
        for _ in keys {
            args.extend([
                &self.fingerprint[..],
                lease.as_bytes(),
                retention.as_bytes(),
            ]);
        }
        let Value::Array(claims) = self.eval(&self.claim, keys, &args).await else {
            panic!("claim answer")
        };
        let tokens: Vec<String> = claims
            .into_iter()
            .map(|c| match c {
                Value::Array(a) if a[0] == Value::Int(1) => match &a[1] {
                    Value::Int(t) => t.to_string(),
                    other => panic!("token {other:?}"),
                },
                other => panic!("expected Acquired, got {other:?}"),
            })
            .collect();
        let mut args: Vec<&[u8]> = Vec::with_capacity(keys.len() * 4);
        for t in &tokens {
            args.extend([t.as_bytes(), retention.as_bytes(), b"0", b""]);
        }
        let Value::Array(done) = self.eval(&self.complete, keys, &args).await else {
            panic!("complete answer")
        };
        assert!(done.iter().all(|d| *d == Value::Int(1)), "lease lost");
    }
}

fn report(name: &str, rates: &[f64]) -> f64 {
    let mean = rates.iter().sum::<f64>() / rates.len() as f64;
    let each: Vec<String> = rates.iter().map(|r| format!("{r:.0}")).collect();
    println!(
        "  {name:<58} {mean:>9.0} msgs/s  (rounds: {})",
        each.join(", ")
    );
    mean
}

#[tokio::main]
async fn main() {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let msgs = env("IDEMQ_BENCH_MSGS", 50_000);
    let tasks = env("IDEMQ_BENCH_TASKS", 32).max(1);
    let batch_msgs = env("IDEMQ_BENCH_BATCH_MSGS", 200_000);
    let batch_tasks = env("IDEMQ_BENCH_BATCH_TASKS", 4).max(1);
    let rounds = env("IDEMQ_BENCH_ROUNDS", 2).max(1);
    const BATCH: usize = 100;

    let store = RedisStore::builder()
        .prefix(PREFIX)
        .connect(&url)
        .await
        .unwrap_or_else(|e| panic!("Redis unreachable: {e}"));
    let conn = ConnectionManager::new(redis::Client::open(url.as_str()).unwrap())
        .await
        .unwrap();
    let raw = Arc::new(Raw {
        conn,
        claim: Script::new(include_str!("../src/lua/claim.lua")),
        complete: Script::new(include_str!("../src/lua/complete.lua")),
        fingerprint: Fingerprint::of(PAYLOAD).0,
    });
    let mut scopes = Vec::new();
    let per_task = msgs / tasks;
    let per_batch_task = batch_msgs / batch_tasks / BATCH;

    println!(
        "idemq-redis bench: {} worker threads, Redis {}",
        tokio::runtime::Handle::current().metrics().num_workers(),
        if url.contains('@') {
            "(REDIS_URL)"
        } else {
            &url
        }
    );

    // Warm up: scripts loaded, connections open, allocator warm.
    {
        let s = scope();
        raw.claim_complete(&[Raw::key(&s, "warm")]).await;
        scopes.push(s);
    }

    println!(
        "single path: {} msgs, {tasks} concurrent tasks, claim + complete per message \
         (engine: KeyStrategy::MessageId, fingerprints on, heartbeat OFF)",
        per_task * tasks
    );
    let (mut raw_single, mut engine_single, mut piped) = (vec![], vec![], vec![]);
    for _ in 0..rounds {
        let s = scope();
        scopes.push(s.clone());
        raw_single.push(
            measure(per_task * tasks, tasks, |t| {
                let (raw, s) = (raw.clone(), s.clone());
                async move {
                    for i in 0..per_task {
                        raw.claim_complete(&[Raw::key(&s, &format!("t{t}-{i}"))])
                            .await;
                    }
                }
            })
            .await,
        );

        let s = scope();
        scopes.push(s.clone());
        let engine: Engine<Envelope> = Engine::new(
            store.clone(),
            EngineConfig::new(s)
                .lease(LEASE)
                .retention(RETENTION)
                .heartbeat(None),
            KeyStrategy::MessageId,
        );
        engine_single.push(
            measure(per_task * tasks, tasks, |t| {
                engine_task(engine.clone(), t, per_task)
            })
            .await,
        );

        let s = scope();
        scopes.push(s.clone());
        piped.push(
            measure(per_task * tasks, tasks, |t| {
                piped_task(store.clone(), s.clone(), t, per_task)
            })
            .await,
        );
    }
    let r = report("raw EVALSHA claim + EVALSHA complete", &raw_single);
    let e = report("Engine::run (claim + handler + complete)", &engine_single);
    println!("  ratio engine/raw: {:.3}", e / r);
    let p = report("pipelined complete_and_claim (store, no engine)", &piped);
    println!(
        "  pipelined gain: {:.2}x over engine, {:.2}x over raw (one round trip per message \
         instead of two)",
        p / e,
        p / r
    );

    let serial = env("IDEMQ_BENCH_SERIAL_MSGS", 3_000);
    println!(
        "one task, messages one after another ({serial} msgs, latency-bound: where pipelining \
         shows)"
    );
    let (mut engine_serial, mut piped_serial) = (vec![], vec![]);
    for _ in 0..rounds {
        let engine: Engine<Envelope> = Engine::new(
            store.clone(),
            EngineConfig::new(scope())
                .lease(LEASE)
                .retention(RETENTION)
                .heartbeat(None),
            KeyStrategy::MessageId,
        );
        engine_serial.push(measure(serial, 1, |_| engine_task(engine.clone(), 0, serial)).await);
        piped_serial
            .push(measure(serial, 1, |_| piped_task(store.clone(), scope(), 0, serial)).await);
    }
    let e = report("Engine::run, 1 task", &engine_serial);
    let p = report("pipelined complete_and_claim, 1 task", &piped_serial);
    println!("  pipelined gain at 1 task: {:.2}x", p / e);

    println!(
        "batch path: {} msgs, {batch_tasks} concurrent tasks, batches of {BATCH}: one claim \
         call + one complete call per batch",
        per_batch_task * batch_tasks * BATCH
    );
    // Computed once, as the raw baseline's is: this compares the store with raw calls, not
    // SHA-256 with nothing.
    let fingerprint = Fingerprint::of(PAYLOAD);
    let (mut raw_batch, mut store_batch) = (vec![], vec![]);
    for _ in 0..rounds {
        let s = scope();
        scopes.push(s.clone());
        raw_batch.push(
            measure(per_batch_task * batch_tasks * BATCH, batch_tasks, |t| {
                let (raw, s) = (raw.clone(), s.clone());
                async move {
                    for b in 0..per_batch_task {
                        let keys: Vec<String> = (0..BATCH)
                            .map(|i| Raw::key(&s, &format!("t{t}-{b}-{i}")))
                            .collect();
                        raw.claim_complete(&keys).await;
                    }
                }
            })
            .await,
        );

        let s = scope();
        scopes.push(s.clone());
        store_batch.push(
            measure(per_batch_task * batch_tasks * BATCH, batch_tasks, |t| {
                let (store, s) = (store.clone(), s.clone());
                async move {
                    for b in 0..per_batch_task {
                        let reqs: Vec<ClaimRequest> = (0..BATCH)
                            .map(|i| ClaimRequest {
                                key: RecordKey::new(
                                    s.clone(),
                                    IdempotencyKey::new(format!("t{t}-{b}-{i}")).unwrap(),
                                ),
                                fingerprint: Some(fingerprint),
                                lease: LEASE,
                                retention: RETENTION,
                            })
                            .collect();
                        let claims = store.claim_batch(&reqs).await.unwrap();
                        let done: Vec<Completion<'_>> = reqs
                            .iter()
                            .zip(&claims)
                            .map(|(r, c)| match c {
                                Claim::Acquired { token, .. } => Completion {
                                    key: &r.key,
                                    token: *token,
                                    result: None,
                                    retention: RETENTION,
                                },
                                other => panic!("{other:?}"),
                            })
                            .collect();
                        for r in store.complete_batch(&done).await.unwrap() {
                            r.unwrap();
                        }
                    }
                }
            })
            .await,
        );
    }
    let r = report("raw EVALSHA claim x100 + EVALSHA complete x100", &raw_batch);
    let b = report("claim_batch(100) + complete_batch(100)", &store_batch);
    println!("  ratio store/raw: {:.3}", b / r);

    drop(scopes);
    let started = Instant::now();
    let mut conn = raw.conn.clone();
    let (mut cursor, mut purged) = (0u64, 0u64);
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{PREFIX}:*"))
            .arg("COUNT")
            .arg(10_000)
            .query_async(&mut conn)
            .await
            .unwrap();
        if !keys.is_empty() {
            let n: u64 = redis::cmd("UNLINK")
                .arg(&keys)
                .query_async(&mut conn)
                .await
                .unwrap();
            purged += n;
        }
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    println!(
        "cleanup: deleted {purged} bench records in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// One consumer task: `n` messages through `Engine::run`, each claimed and completed.
async fn engine_task(engine: Engine<Envelope>, t: usize, n: usize) {
    for i in 0..n {
        let msg = Envelope::new(Bytes::from_static(PAYLOAD)).with_message_id(format!("t{t}-{i}"));
        let out = engine
            .run(&msg, || async { Ok::<_, Infallible>(()) })
            .await
            .unwrap();
        assert!(matches!(out, Outcome::Processed { .. }), "{out:?}");
    }
}

/// One consumer task whose completion of message N rides with the claim of N+1.
async fn piped_task(store: RedisStore, s: Scope, t: usize, n: usize) {
    let req = |i: usize| ClaimRequest {
        key: RecordKey::new(s.clone(), IdempotencyKey::new(format!("t{t}-{i}")).unwrap()),
        fingerprint: Some(Fingerprint::of(PAYLOAD)),
        lease: LEASE,
        retention: RETENTION,
    };
    let acquired = |c: Claim| match c {
        Claim::Acquired { token, .. } => token,
        other => panic!("{other:?}"),
    };
    let mut held = req(0);
    let mut token = acquired(store.claim(&held).await.unwrap());
    for i in 1..n {
        let next = req(i);
        let done = Completion {
            key: &held.key,
            token,
            result: None,
            retention: RETENTION,
        };
        let (completed, claim) = store.complete_and_claim(&done, &next).await.unwrap();
        completed.unwrap();
        token = acquired(claim);
        held = next;
    }
    store
        .complete(&held.key, token, None, RETENTION)
        .await
        .unwrap();
}
