//! Throughput of the Redis store against raw `EVALSHA` calls of the same scripts, in one run.
//!
//! `cargo bench -p idemq-redis --bench redis_store` (Redis on 127.0.0.1:6379, or `REDIS_URL`).
//! Sizes: `IDEMQ_BENCH_MSGS` (single path, default 20000), `IDEMQ_BENCH_TASKS` (32),
//! `IDEMQ_BENCH_SERIAL_MSGS` (one-task comparison, 2000 a variant), `IDEMQ_BENCH_SERIAL_ROUNDS`
//! (9), `IDEMQ_BENCH_BATCH_MSGS` (200000), `IDEMQ_BENCH_BATCH_TASKS` (4), `IDEMQ_BENCH_ROUNDS`
//! (3: every measurement is repeated, in a different order each round, and the mean reported;
//! the one-task lines give min / median / max instead). `IDEMQ_BENCH_SERIAL_ONLY=1` runs the
//! one-task lines alone. The records of each measurement are unlinked by name before the
//! next; `IDEMQ_BENCH_CLEANUP=0` leaves them for Redis to expire instead (their retention is
//! one minute).
//!
//! Each line also gives the CPU time per message of the Redis server (from `INFO cpu`) and of
//! the bench process (Linux): on a loaded machine the wall-clock rates vary, those costs much
//! less, and one core divided by the server's is what it could do alone.
//!
//! The batch path also measures a floor: the two bare commands a message needs at the least
//! (a create and a read-and-write that moves the expiry), in scripts that take no decision.
//! No store that keeps one Redis key per record can beat it.
//!
//! The engine runs with the heartbeat off (`EngineConfig::heartbeat(None)`), except on one
//! of the one-task lines, which measures the default configuration.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use idemq_core::{
    Claim, ClaimRequest, Engine, EngineConfig, Envelope, FencingToken, Fingerprint, IdempotencyKey,
    KeyStrategy, Outcome, RecordKey, Scope, Store,
};
use idemq_redis::{Completion, RedisStore};
use redis::aio::ConnectionManager;
use redis::{Script, Value};

const LEASE: Duration = Duration::from_secs(30);
/// Short, so Redis drops the bench's records soon even if the cleanup is skipped or cut off.
const RETENTION: Duration = Duration::from_secs(60);
/// The bench's own key prefix.
const PREFIX: &str = "idemq-bench";
const PAYLOAD: &[u8] = b"reduce stock of item 42 by 1";
const BATCH: usize = 100;

/// The floor under any claim: one `SET NX PXAT GET` a key, writing a value the size of a new
/// record (83 bytes), with no decision taken on the reply.
const FLOOR_CLAIM: &str = "
local t = redis.call('TIME')
local px = string.format('%.0f', t[1] * 1000 + ARGV[1])
local v = string.rep('c', 83)
for _, key in ipairs(KEYS) do redis.call('SET', key, v, 'NX', 'PXAT', px, 'GET') end
return string.rep('N', #KEYS)";

/// The floor under any completion: one read-and-write a key that also moves the expiry
/// (`SET XX PXAT GET`), again with no decision taken.
const FLOOR_COMPLETE: &str = "
local t = redis.call('TIME')
local px = string.format('%.0f', t[1] * 1000 + ARGV[1])
local v = string.rep('d', 83)
for _, key in ipairs(KEYS) do redis.call('SET', key, v, 'XX', 'PXAT', px, 'GET') end
return string.rep('1', #KEYS)";

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn scope() -> Scope {
    Scope::new(format!("bench/{}", uuid::Uuid::new_v4().simple())).unwrap()
}

/// The name of message `i` of task `t`: every measurement names its keys so, in its own
/// scope, and the cleanup unlinks them by name.
fn name(t: usize, i: usize) -> String {
    format!("t{t}-{i}")
}

/// The Redis CPU time used so far (user + system), in seconds.
async fn redis_cpu(conn: &mut ConnectionManager) -> f64 {
    let info: String = redis::cmd("INFO")
        .arg("cpu")
        .query_async(conn)
        .await
        .unwrap();
    info.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            matches!(k, "used_cpu_sys" | "used_cpu_user").then(|| v.trim().parse::<f64>().ok())?
        })
        .sum()
}

/// The CPU time this process's threads have used so far, in seconds, from
/// `/proc/self/task/*/schedstat` (Linux; `None` elsewhere).
fn own_cpu() -> Option<f64> {
    let mut ns = 0u64;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        ns += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(ns as f64 / 1e9)
}

/// A measurement: messages per second, and the CPU microseconds per message of the Redis
/// server and of this process (the client).
#[derive(Clone, Copy)]
struct Rate {
    msgs_per_s: f64,
    redis_us: f64,
    client_us: Option<f64>,
}

/// Runs `tasks` copies of `body(task)` at once.
async fn measure<F, Fut>(conn: &ConnectionManager, msgs: usize, tasks: usize, body: F) -> Rate
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut conn = conn.clone();
    let cpu = redis_cpu(&mut conn).await;
    let own = own_cpu();
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks).map(|t| tokio::spawn(body(t))).collect();
    for h in handles {
        h.await.expect("bench task panicked");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let own = own_cpu().zip(own).map(|(b, a)| (b - a) * 1e6 / msgs as f64);
    let cpu = redis_cpu(&mut conn).await - cpu;
    Rate {
        msgs_per_s: msgs as f64 / elapsed,
        redis_us: cpu * 1e6 / msgs as f64,
        client_us: own,
    }
}

/// The same scripts the store runs, called directly with their arguments prepared once.
struct Raw {
    conn: ConnectionManager,
    claim: Script,
    complete: Script,
    floor_claim: Script,
    floor_complete: Script,
    fingerprint: [u8; 32],
    lease: String,
    retention: String,
}

impl Raw {
    fn key(scope: &Scope, key: &str) -> String {
        format!("{PREFIX}:{{{scope}}}:{key}")
    }

    /// One EVALSHA, built and sent as plainly as redis-rs allows (the scripts are loaded at
    /// the start).
    async fn eval(&self, script: &Script, keys: &[String], args: &[&[u8]]) -> Value {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(script.get_hash()).arg(keys.len());
        for k in keys {
            cmd.arg(k.as_bytes());
        }
        for a in args {
            cmd.arg(*a);
        }
        cmd.query_async(&mut self.conn.clone()).await.unwrap()
    }

    /// One bare `SET`: a round trip and nothing else.
    async fn set(&self, key: &str) {
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg(PAYLOAD)
            .query_async(&mut self.conn.clone())
            .await
            .unwrap();
    }

    /// The two bare commands a key (`FLOOR_CLAIM`, `FLOOR_COMPLETE`), a script call each: what
    /// Redis itself costs, with none of the store's checks.
    async fn floor(&self, keys: &[String]) {
        let args: [&[u8]; 1] = [self.retention.as_bytes()];
        self.eval(&self.floor_claim, keys, &args).await;
        self.eval(&self.floor_complete, keys, &args).await;
    }

    /// Claims and completes `keys` (all new) with one script call each.
    async fn claim_complete(&self, keys: &[String]) {
        let mut fps = Vec::with_capacity(keys.len() * 33);
        for _ in keys {
            fps.push(32);
            fps.extend_from_slice(&self.fingerprint);
        }
        let args: [&[u8]; 3] = [self.lease.as_bytes(), self.retention.as_bytes(), &fps];
        match self.eval(&self.claim, keys, &args).await {
            // 'N' is Acquired with token 1.
            Value::BulkString(b) if b.len() == keys.len() && b.iter().all(|&c| c == b'N') => {}
            other => panic!("expected every key acquired, got {other:?}"),
        }
        let tokens = 1u64.to_be_bytes().repeat(keys.len());
        let args: [&[u8]; 3] = [self.retention.as_bytes(), &tokens, b""];
        match self.eval(&self.complete, keys, &args).await {
            Value::BulkString(b) if b.len() == keys.len() && b.iter().all(|&c| c == b'1') => {}
            other => panic!("lease lost: {other:?}"),
        }
    }
}

fn report(name: &str, rates: &[Rate]) -> f64 {
    let mean = rates.iter().map(|r| r.msgs_per_s).sum::<f64>() / rates.len() as f64;
    let cpu = rates.iter().map(|r| r.redis_us).sum::<f64>() / rates.len() as f64;
    let client = rates
        .iter()
        .map(|r| r.client_us)
        .sum::<Option<f64>>()
        .map_or("  n/a".into(), |c| {
            format!("{:>5.2}", c / rates.len() as f64)
        });
    let each: Vec<String> = rates
        .iter()
        .map(|r| format!("{:.0}", r.msgs_per_s))
        .collect();
    println!(
        "  {name:<48} {mean:>7.0} msgs/s  cpu us/msg: redis {cpu:>5.2} client {client}  \
         (rounds: {})",
        each.join(", ")
    );
    mean
}

/// One task, messages one after another: latency-bound, so what `Engine::run` adds to the
/// two script calls a message needs shows here. On a shared machine the load drifts faster
/// than a measurement lasts, so the variants take turns message by message (in a shuffled
/// order each time) in one task, each message timed alone: every variant sees the same load,
/// and the ratios pair the figures of one round.
async fn serial(
    store: &RedisStore,
    raw: &Arc<Raw>,
    admin: &ConnectionManager,
    cleaning: &mut Cleaning,
    made: &mut Vec<(Scope, usize, usize)>,
) {
    let n = env("IDEMQ_BENCH_SERIAL_MSGS", 2_000).max(1);
    let rounds = env("IDEMQ_BENCH_SERIAL_ROUNDS", 9).max(1);
    println!(
        "one task, messages one after another ({n} msgs a variant, interleaved, {rounds} \
         rounds; engine: KeyStrategy::MessageId, fingerprints on)"
    );
    let mut us: Vec<Vec<f64>> = vec![Vec::new(); Serial::NAMES.len()];
    for round in 0..rounds {
        let scopes: Vec<Scope> = Serial::NAMES.iter().map(|_| scope()).collect();
        let engine = |s: &Scope, heartbeat: bool| {
            let config = EngineConfig::new(s.clone())
                .lease(LEASE)
                .retention(RETENTION);
            let config = if heartbeat {
                config
            } else {
                config.heartbeat(None)
            };
            Engine::new(store.clone(), config, KeyStrategy::MessageId)
        };
        let mut run = Serial {
            raw: raw.clone(),
            engine: engine(&scopes[3], true),
            engine_no_heartbeat: engine(&scopes[4], false),
            store: store.clone(),
            held: None,
            scopes: scopes.clone(),
        };
        let took = tokio::spawn(async move {
            let mut took = [Duration::ZERO; Serial::NAMES.len()];
            let mut order: [usize; Serial::NAMES.len()] = std::array::from_fn(|v| v);
            let mut rng = 0x9e37_79b9_7f4a_7c15_u64 ^ round as u64;
            for i in 0..n {
                shuffle(&mut order, &mut rng);
                for &v in &order {
                    let started = Instant::now();
                    run.message(v, i, i + 1 == n).await;
                    took[v] += started.elapsed();
                }
            }
            took
        })
        .await
        .expect("bench task panicked");
        for (v, t) in took.iter().enumerate() {
            us[v].push(t.as_secs_f64() * 1e6 / n as f64);
        }
        made.extend(scopes.into_iter().map(|s| (s, 1, n)));
        cleaning.run(admin, made).await;
    }
    for (name, v) in Serial::NAMES.iter().zip(&us) {
        let (lo, mid, hi) = spread(v.clone());
        println!("  {name:<48} us/msg min {lo:>6.1} median {mid:>6.1} max {hi:>6.1}");
    }
    for (what, a, b) in [
        ("Engine::run / raw", 3, 2),
        ("Engine::run heartbeat off / raw", 4, 2),
        ("raw / two bare SETs (what the scripts add)", 2, 1),
        ("two bare SETs / bare SET", 1, 0),
        ("Engine::run / pipelined (the pipelining gain)", 3, 5),
    ] {
        let (lo, mid, hi) = spread(us[a].iter().zip(&us[b]).map(|(a, b)| a / b).collect());
        println!("  ratio {what:<46} min {lo:>6.3} median {mid:>6.3} max {hi:>6.3}");
    }
}

/// The variants of the one-task comparison, one message at a time.
struct Serial {
    raw: Arc<Raw>,
    engine: Engine<Envelope>,
    engine_no_heartbeat: Engine<Envelope>,
    store: RedisStore,
    /// The pipelined variant's claim, completed with its next message's claim.
    held: Option<(RecordKey, FencingToken)>,
    /// One scope a variant.
    scopes: Vec<Scope>,
}

impl Serial {
    const NAMES: [&str; 6] = [
        "bare SET (one round trip, reference)",
        "two bare SETs (two round trips)",
        "raw EVALSHA claim + EVALSHA complete",
        "Engine::run (default config, heartbeat on)",
        "Engine::run, heartbeat off",
        "pipelined complete_and_claim (store, no engine)",
    ];

    /// Message `i` of variant `v`; the pipelined variant completes its last claim alone.
    async fn message(&mut self, v: usize, i: usize, last: bool) {
        let key = || Raw::key(&self.scopes[v], &name(0, i));
        match v {
            0 => self.raw.set(&key()).await,
            1 => {
                let key = key();
                self.raw.set(&key).await;
                self.raw.set(&key).await;
            }
            2 => self.raw.claim_complete(&[key()]).await,
            3 | 4 => {
                let engine = if v == 3 {
                    &self.engine
                } else {
                    &self.engine_no_heartbeat
                };
                let msg = Envelope::new(Bytes::from_static(PAYLOAD)).with_message_id(name(0, i));
                let out = engine
                    .run(&msg, || async { Ok::<_, Infallible>(()) })
                    .await
                    .unwrap();
                assert!(matches!(out, Outcome::Processed { .. }), "{out:?}");
            }
            _ => self.piped(i, last).await,
        }
    }

    /// Claims message `i` in the same round trip as the completion of the one before.
    async fn piped(&mut self, i: usize, last: bool) {
        let next = ClaimRequest {
            key: RecordKey::new(
                self.scopes[5].clone(),
                IdempotencyKey::new(name(0, i)).unwrap(),
            ),
            fingerprint: Some(Fingerprint::of(PAYLOAD)),
            lease: LEASE,
            retention: RETENTION,
        };
        let claim = match self.held.take() {
            None => self.store.claim(&next).await.unwrap(),
            Some((key, token)) => {
                let done = Completion {
                    key: &key,
                    token,
                    result: None,
                    retention: RETENTION,
                };
                let (completed, claim) = self.store.complete_and_claim(&done, &next).await.unwrap();
                completed.unwrap();
                claim
            }
        };
        let Claim::Acquired { token, .. } = claim else {
            panic!("{claim:?}");
        };
        if last {
            self.store
                .complete(&next.key, token, None, RETENTION)
                .await
                .unwrap();
        } else {
            self.held = Some((next.key, token));
        }
    }
}

/// Shuffles `order` in place (Fisher-Yates over xorshift64).
fn shuffle(order: &mut [usize], rng: &mut u64) {
    for i in (1..order.len()).rev() {
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        order.swap(i, (*rng % (i as u64 + 1)) as usize);
    }
}

/// The minimum, median and maximum of `v`.
fn spread(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    (v[0], (v[(n - 1) / 2] + v[n / 2]) / 2.0, v[n - 1])
}

#[tokio::main]
async fn main() {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let msgs = env("IDEMQ_BENCH_MSGS", 20_000);
    let tasks = env("IDEMQ_BENCH_TASKS", 32).max(1);
    let batch_msgs = env("IDEMQ_BENCH_BATCH_MSGS", 200_000);
    let batch_tasks = env("IDEMQ_BENCH_BATCH_TASKS", 4).max(1);
    let rounds = env("IDEMQ_BENCH_ROUNDS", 3).max(1);
    let mut cleaning = Cleaning {
        on: env("IDEMQ_BENCH_CLEANUP", 1) != 0,
        ..Cleaning::default()
    };
    let bench_started = Instant::now();

    let store = RedisStore::builder()
        .prefix(PREFIX)
        .connect(&url)
        .await
        .unwrap_or_else(|e| panic!("Redis unreachable: {e}"));
    let conn = ConnectionManager::new(redis::Client::open(url.as_str()).unwrap())
        .await
        .unwrap();
    // INFO and cleanup on their own connection, off the measured one.
    let admin = ConnectionManager::new(redis::Client::open(url.as_str()).unwrap())
        .await
        .unwrap();
    let raw = Arc::new(Raw {
        conn,
        claim: Script::new(include_str!("../src/lua/claim.lua")),
        complete: Script::new(include_str!("../src/lua/complete.lua")),
        floor_claim: Script::new(FLOOR_CLAIM),
        floor_complete: Script::new(FLOOR_COMPLETE),
        fingerprint: Fingerprint::of(PAYLOAD).0,
        lease: LEASE.as_millis().to_string(),
        retention: RETENTION.as_millis().to_string(),
    });
    // Every measurement's scope and key names: (scope, tasks, messages per task).
    let mut made: Vec<(Scope, usize, usize)> = Vec::new();
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
        for script in [
            &raw.claim,
            &raw.complete,
            &raw.floor_claim,
            &raw.floor_complete,
        ] {
            let _: String = script.load_async(&mut raw.conn.clone()).await.unwrap();
        }
        let s = scope();
        raw.claim_complete(&[Raw::key(&s, &name(0, 0))]).await;
        made.push((s, 1, 1));
    }

    serial(&store, &raw, &admin, &mut cleaning, &mut made).await;
    if env("IDEMQ_BENCH_SERIAL_ONLY", 0) != 0 {
        return;
    }

    println!(
        "single path: {} msgs, {tasks} concurrent tasks, claim + complete per message \
         (engine: KeyStrategy::MessageId, fingerprints on, heartbeat OFF)",
        per_task * tasks
    );
    let (mut raw_single, mut engine_single, mut piped) = (vec![], vec![], vec![]);
    for step in 0..3 * rounds {
        // Each round in another order, so no variant always runs first.
        let s = scope();
        made.push((s.clone(), tasks, per_task));
        match (step + step / 3) % 3 {
            0 => raw_single.push(
                measure(&admin, per_task * tasks, tasks, |t| {
                    let (raw, s) = (raw.clone(), s.clone());
                    async move {
                        for i in 0..per_task {
                            raw.claim_complete(&[Raw::key(&s, &name(t, i))]).await;
                        }
                    }
                })
                .await,
            ),
            1 => {
                let engine: Engine<Envelope> = Engine::new(
                    store.clone(),
                    EngineConfig::new(s)
                        .lease(LEASE)
                        .retention(RETENTION)
                        .heartbeat(None),
                    KeyStrategy::MessageId,
                );
                engine_single.push(
                    measure(&admin, per_task * tasks, tasks, |t| {
                        engine_task(engine.clone(), t, per_task)
                    })
                    .await,
                )
            }
            _ => piped.push(
                measure(&admin, per_task * tasks, tasks, |t| {
                    piped_task(store.clone(), s.clone(), t, per_task)
                })
                .await,
            ),
        }
        cleaning.run(&admin, &mut made).await;
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

    let batch_total = per_batch_task * batch_tasks * BATCH;
    println!(
        "batch path: {batch_total} msgs, {batch_tasks} concurrent tasks, batches of {BATCH}: one \
         claim call + one complete call per batch"
    );
    // Computed once, as the raw baseline's is: this compares the store with raw calls, not
    // SHA-256 with nothing.
    let fingerprint = Fingerprint::of(PAYLOAD);
    let (mut floor_batch, mut raw_batch, mut store_batch) = (vec![], vec![], vec![]);
    for step in 0..3 * rounds {
        let s = scope();
        made.push((s.clone(), batch_tasks, per_batch_task * BATCH));
        let variant = (step + step / 3) % 3;
        if variant != 1 {
            // The bare floor or the raw scripts: the same keys, one call pair a batch.
            let floor = variant == 2;
            let rate = measure(&admin, batch_total, batch_tasks, |t| {
                let (raw, s) = (raw.clone(), s.clone());
                async move {
                    for b in 0..per_batch_task {
                        let keys: Vec<String> = (0..BATCH)
                            .map(|i| Raw::key(&s, &name(t, b * BATCH + i)))
                            .collect();
                        if floor {
                            raw.floor(&keys).await;
                        } else {
                            raw.claim_complete(&keys).await;
                        }
                    }
                }
            })
            .await;
            if floor {
                floor_batch.push(rate);
            } else {
                raw_batch.push(rate);
            }
        } else {
            store_batch.push(
                measure(&admin, batch_total, batch_tasks, |t| {
                    let (store, s) = (store.clone(), s.clone());
                    async move {
                        for b in 0..per_batch_task {
                            let reqs: Vec<ClaimRequest> = (0..BATCH)
                                .map(|i| ClaimRequest {
                                    key: RecordKey::new(
                                        s.clone(),
                                        IdempotencyKey::new(name(t, b * BATCH + i)).unwrap(),
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
        cleaning.run(&admin, &mut made).await;
    }
    let r = report("raw EVALSHA claim x100 + EVALSHA complete x100", &raw_batch);
    let b = report("claim_batch(100) + complete_batch(100)", &store_batch);
    println!("  ratio store/raw: {:.3}", b / r);
    let f = report("floor: bare SET NX GET + SET XX GET x100", &floor_batch);
    println!(
        "  ratio store/floor: {:.3} (the floor has no store logic at all)",
        b / f
    );

    cleaning.run(&admin, &mut made).await;
    if cleaning.on {
        println!(
            "cleanup (after each measurement, untimed): unlinked {} of {} bench records by \
             name in {:.2} s",
            cleaning.unlinked, cleaning.records, cleaning.secs
        );
    } else {
        println!(
            "cleanup: skipped; Redis drops the {} bench records within {} s",
            cleaning.records,
            RETENTION.max(LEASE).as_secs()
        );
    }
    println!("total {:.1} s", bench_started.elapsed().as_secs_f64());
}

/// Unlinks the records of each measurement before the next, so every one starts from the
/// same keyspace (and none pays for another's growth).
#[derive(Default)]
struct Cleaning {
    on: bool,
    records: usize,
    unlinked: u64,
    secs: f64,
}

impl Cleaning {
    async fn run(&mut self, conn: &ConnectionManager, made: &mut Vec<(Scope, usize, usize)>) {
        self.records += made.iter().map(|(_, t, n)| t * n).sum::<usize>();
        if self.on {
            let started = Instant::now();
            self.unlinked += unlink(conn, made).await;
            self.secs += started.elapsed().as_secs_f64();
        }
        made.clear();
    }
}

/// Unlinks every record the bench made, by name: UNLINKs of 1000 keys, pipelined 16 at a
/// time (no SCAN over the whole keyspace).
async fn unlink(conn: &ConnectionManager, made: &[(Scope, usize, usize)]) -> u64 {
    let mut conn = conn.clone();
    let names = made
        .iter()
        .flat_map(|(s, tasks, n)| (0..*tasks).flat_map(move |t| (0..*n).map(move |i| (s, t, i))));
    let mut pipe = redis::pipe();
    let (mut cmd, mut in_cmd, mut cmds, mut unlinked) = (redis::cmd("UNLINK"), 0, 0, 0u64);
    let mut flush = async |pipe: &mut redis::Pipeline| {
        if pipe.is_empty() {
            return 0;
        }
        let counts: Vec<u64> = pipe.query_async(&mut conn).await.unwrap();
        pipe.clear();
        counts.iter().sum::<u64>()
    };
    for (s, t, i) in names {
        cmd.arg(Raw::key(s, &name(t, i)));
        in_cmd += 1;
        if in_cmd == 1000 {
            pipe.add_command(std::mem::replace(&mut cmd, redis::cmd("UNLINK")));
            (in_cmd, cmds) = (0, cmds + 1);
            if cmds == 16 {
                unlinked += flush(&mut pipe).await;
                cmds = 0;
            }
        }
    }
    if in_cmd > 0 {
        pipe.add_command(cmd);
    }
    unlinked + flush(&mut pipe).await
}

/// One consumer task: `n` messages through `Engine::run`, each claimed and completed.
async fn engine_task(engine: Engine<Envelope>, t: usize, n: usize) {
    for i in 0..n {
        let msg = Envelope::new(Bytes::from_static(PAYLOAD)).with_message_id(name(t, i));
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
        key: RecordKey::new(s.clone(), IdempotencyKey::new(name(t, i)).unwrap()),
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
