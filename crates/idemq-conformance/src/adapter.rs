//! The adapter conformance suite: what every broker adapter must do on the consumer
//! runtime, as tests against its real broker.
//!
//! An adapter implements [`Broker`] and [`Lane`] for its test setup and runs every rule with
//! [`adapter_conformance!`](crate::adapter_conformance). Each rule works on a fresh lane (a
//! queue or topic nobody else uses), keys messages by message id, and waits on events, not
//! on the clock.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use idemq_consumer::{decoded, in_tx, run, Consumer, Source, Stats};
use idemq_core::adapter::{HandlerFuture, RetryPolicy};
use idemq_core::store::MemoryStore;
use idemq_core::{Engine, EngineConfig, KeyStrategy, Message, Scope, TxEngine};
use idemq_sqlite::SqliteStore;
use tokio::sync::{mpsc, watch};

/// The broker under test.
pub trait Broker: Send + Sync + 'static {
    /// One fresh queue or topic.
    type Lane: Lane;

    /// A queue or topic no other test uses, with this retry policy.
    fn lane(&self, policy: RetryPolicy) -> impl Future<Output = Self::Lane> + Send;
}

/// One queue or topic of the broker under test.
pub trait Lane: Send + Sync + 'static {
    /// The adapter's source.
    type Source: Source;

    /// A runtime consumer of this lane, on a connection of its own, retrying with the
    /// lane's policy.
    fn consumer(&self) -> Consumer<Self::Source>;

    /// Publishes `payload` with message id `id` (`None`: no id, so the message cannot be
    /// keyed by message id). Sending the same id twice is a duplicate send.
    fn publish(&self, id: Option<&str>, payload: &[u8]) -> impl Future<Output = ()> + Send;

    /// The next message on the lane's dead-letter path, with what the adapter wrote on it;
    /// panics when none arrives within 30 s.
    fn dead_letter(&self) -> impl Future<Output = DeadLettered> + Send;

    /// The queue or topic name that dead letters report as their origin.
    fn name(&self) -> String;
}

/// A dead-lettered message as the adapter's headers (or properties) describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLettered {
    /// The message id, if it had one.
    pub message_id: Option<String>,
    /// The reason's short name (`unkeyable`, `undecodable`, `conflict`, `retries-exhausted`).
    pub reason: String,
    /// The reason in words, with the last handler error.
    pub error: String,
    /// Attempts made.
    pub attempts: u32,
    /// The queue or topic it came from.
    pub original: String,
    /// Unix ms of the first failure.
    pub first_failure: i64,
    /// Unix ms of the last failure.
    pub last_failure: i64,
}

/// Generates one `#[tokio::test]` per rule of this module for a broker: `broker` is a
/// future giving a [`Broker`].
///
/// `ordered` after it leaves out the three rules that need two messages in flight at once
/// (an in-progress duplicate, a batch with two copies of a key, a drain beside a hung
/// handler), for an ordered consumer that runs one message of a queue or partition at a
/// time: they would pass or hang by where the producer put the messages.
#[macro_export]
macro_rules! adapter_conformance {
    (broker: $broker:expr, ordered $(,)?) => {
        $crate::adapter_conformance!(@tests $broker;
            exactly_once_with_duplicates_three_consumers_and_one_killed,
            retry_then_success_sees_each_attempt,
            always_failing_is_dead_lettered_after_max_attempts,
            poison_is_dead_lettered_at_once,
            connection_lost_mid_handler_resumes_and_applies_once,
        );
    };
    (broker: $broker:expr $(,)?) => {
        $crate::adapter_conformance!(@tests $broker;
            exactly_once_with_duplicates_three_consumers_and_one_killed,
            retry_then_success_sees_each_attempt,
            always_failing_is_dead_lettered_after_max_attempts,
            poison_is_dead_lettered_at_once,
            in_progress_duplicate_is_deferred_never_concurrent,
            connection_lost_mid_handler_resumes_and_applies_once,
            shutdown_drains_and_abandons_a_hung_handler,
            batch_with_two_copies_of_a_key_runs_it_once,
        );
    };
    (@tests $broker:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                $crate::adapter::$name(&$broker.await).await;
            }
        )*
    };
}

/// Short clocks: retries after 200 ms, doubling; in-progress copies back after 100 ms.
pub fn fast_policy(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        initial_interval: Duration::from_millis(200),
        multiplier: 2.0,
        max_interval: Duration::from_secs(2),
        redeliver_after: Duration::from_millis(100),
    }
}

fn fresh_scope() -> Scope {
    Scope::new(format!("adapter/{}", uuid::Uuid::new_v4().simple())).unwrap()
}

fn memory_engine<D: idemq_core::Message>(store: Arc<MemoryStore>, lease: Duration) -> Engine<D> {
    let config = EngineConfig::new(fresh_scope()).lease(lease);
    Engine::with_shared_store(store, config, KeyStrategy::MessageId)
}

type Delivery<L> = <<L as Lane>::Source as Source>::Delivery;

/// Awaits `fut`; panics after 30 s.
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), fut)
        .await
        .unwrap_or_else(|_| panic!("timed out after 30 s waiting for {what}"))
}

/// Waits until `f` holds of a consumer's stats; panics after 30 s.
async fn until(what: &str, stats: &Stats, f: impl Fn(&Stats) -> bool) {
    within(what, stats.wait_until(f)).await
}

/// How often each message id ran, and how many ran at once at most.
struct Runs {
    counts: Mutex<HashMap<String, u32>>,
    attempts: Mutex<Vec<u32>>,
    running: AtomicUsize,
    most_at_once: AtomicUsize,
    started: mpsc::UnboundedSender<String>,
}

/// The ids of handler runs as they start.
struct Started {
    rx: mpsc::UnboundedReceiver<String>,
    seen: HashMap<String, u32>,
}

impl Started {
    /// Waits until a run of `id` has started (counting runs seen before); panics after 30 s.
    async fn until(&mut self, id: &str) {
        within(&format!("a run of {id} to start"), async {
            while self.seen.get(id).copied().unwrap_or(0) == 0 {
                let got = self.rx.recv().await.expect("handlers alive");
                *self.seen.entry(got).or_default() += 1;
            }
            *self.seen.get_mut(id).expect("seen") -= 1;
        })
        .await
    }
}

impl Runs {
    fn new() -> (Arc<Self>, Started) {
        let (tx, rx) = mpsc::unbounded_channel();
        let runs = Self {
            counts: Mutex::default(),
            attempts: Mutex::default(),
            running: AtomicUsize::new(0),
            most_at_once: AtomicUsize::new(0),
            started: tx,
        };
        let started = Started {
            rx,
            seen: HashMap::new(),
        };
        (Arc::new(runs), started)
    }

    fn start(&self, id: &str, attempt: u32) {
        *self
            .counts
            .lock()
            .unwrap()
            .entry(id.to_owned())
            .or_default() += 1;
        self.attempts.lock().unwrap().push(attempt);
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_at_once.fetch_max(now, Ordering::SeqCst);
        let _ = self.started.send(id.to_owned());
    }

    fn end(&self) {
        self.running.fetch_sub(1, Ordering::SeqCst);
    }

    fn of(&self, id: &str) -> u32 {
        self.counts.lock().unwrap().get(id).copied().unwrap_or(0)
    }
}

/// A gate handlers wait at until the test opens it.
#[derive(Clone)]
struct Gate(watch::Sender<bool>);

impl Gate {
    fn new() -> Self {
        Self(watch::channel(false).0)
    }
    fn open(&self) {
        self.0.send_replace(true);
    }
    async fn wait(&self) {
        let _ = self.0.subscribe().wait_for(|o| *o).await;
    }
}

/// Pins a closure to the higher-ranked signature `in_tx` wants.
fn writes<F>(f: F) -> F
where
    F: for<'t> Fn(String, &'t mut sqlx::SqliteConnection) -> HandlerFuture<'t, (), sqlx::Error>,
{
    f
}

/// A handler that notes its run, waits at `gate`, then succeeds.
fn gated<D: Message>(
    runs: &Arc<Runs>,
    gate: &Gate,
) -> impl Fn(&D) -> BoxFuture<'static, Result<(), String>> + Send + Sync + 'static {
    let (runs, gate) = (runs.clone(), gate.clone());
    move |d: &D| {
        runs.start(&id_of(d), 1);
        let (runs, gate) = (runs.clone(), gate.clone());
        Box::pin(async move {
            gate.wait().await;
            runs.end();
            Ok(())
        })
    }
}

fn id_of<D: idemq_core::Message>(d: &D) -> String {
    d.message_id().unwrap_or_default().to_owned()
}

/// Every message applied once, in the business transaction, though each was sent twice
/// (some three times), three consumers shared the lane and one was killed mid-handler.
pub async fn exactly_once_with_duplicates_three_consumers_and_one_killed<B: Broker>(broker: &B) {
    let lane = broker.lane(fast_policy(5)).await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("business.db").display());
    let store = Arc::new(SqliteStore::connect(&url).await.unwrap());
    // No unique key on the message: a double apply would show as two rows.
    sqlx::query("CREATE TABLE effects (id TEXT NOT NULL, consumer INTEGER NOT NULL)")
        .execute(store.pool())
        .await
        .unwrap();
    let n = 40;
    let ids: Vec<String> = (0..n).map(|i| format!("m{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        lane.publish(Some(id), id.as_bytes()).await;
        lane.publish(Some(id), id.as_bytes()).await;
        if i % 4 == 0 {
            lane.publish(Some(id), id.as_bytes()).await;
        }
    }

    let config = EngineConfig::new(fresh_scope()).lease(Duration::from_secs(2));
    let (started_tx, mut doomed_started) = mpsc::unbounded_channel::<String>();
    let spawn = |who: i64, hang: bool| {
        let engine = TxEngine::new(store.clone(), config.clone(), KeyStrategy::MessageId);
        let started = started_tx.clone();
        let handler = in_tx(
            engine,
            |d: &Delivery<B::Lane>| Ok(id_of(d)),
            writes(move |id: String, tx: &mut sqlx::SqliteConnection| {
                let started = started.clone();
                Box::pin(async move {
                    sqlx::query("INSERT INTO effects (id, consumer) VALUES (?, ?)")
                        .bind(&id)
                        .bind(who)
                        .execute(&mut *tx)
                        .await?;
                    if hang {
                        // Written but not committed: the kill must take the write with it.
                        let _ = started.send(id);
                        std::future::pending::<()>().await;
                    }
                    Ok(())
                })
            }),
        );
        lane.consumer().concurrency(4).spawn(handler)
    };
    let doomed = spawn(0, true);
    within(
        "the doomed consumer to start a handler",
        doomed_started.recv(),
    )
    .await;
    doomed.kill().await;
    let a = spawn(1, false);
    let b = spawn(2, false);
    let c = spawn(3, false);
    // Each commit of a handler's writes is one `processed` (a duplicate never commits), so
    // the three consumers have applied every message once their counts add up to n.
    let stats = [a.stats().clone(), b.stats().clone(), c.stats().clone()];
    let applied = || stats.iter().map(|s| s.processed.get()).sum::<u64>();
    within("every message to be applied", async {
        while applied() < n as u64 {
            let waits = stats.iter().map(|s| {
                let before = (s.processed.get(), s.settled());
                Box::pin(s.wait_until(move |s| (s.processed.get(), s.settled()) != before))
            });
            futures::future::select_all(waits).await;
        }
    })
    .await;
    for h in [a, b, c] {
        within("a consumer to shut down", h.shutdown()).await;
    }
    let rows: Vec<(String, i64)> = sqlx::query_as("SELECT id, COUNT(*) FROM effects GROUP BY id")
        .fetch_all(store.pool())
        .await
        .unwrap();
    assert_eq!(rows.len(), n, "every message applied");
    for (id, times) in rows {
        assert_eq!(times, 1, "{id} applied {times} times");
    }
}

/// A handler that fails twice runs a third time and succeeds; it sees attempts 1, 2, 3.
pub async fn retry_then_success_sees_each_attempt<B: Broker>(broker: &B) {
    let lane = broker.lane(fast_policy(5)).await;
    lane.publish(Some("flaky"), b"x").await;
    let (runs, _started) = Runs::new();
    let engine = memory_engine(Arc::new(MemoryStore::new()), Duration::from_secs(10));
    let r = runs.clone();
    let h = lane
        .consumer()
        .spawn(run(engine, move |d: &Delivery<B::Lane>| {
            use idemq_core::adapter::Delivery as _;
            let attempt = d.attempt();
            r.start(&id_of(d), attempt);
            r.end();
            async move {
                if attempt < 3 {
                    Err(format!("failure {attempt}"))
                } else {
                    Ok(())
                }
            }
        }));
    let stats = h.stats().clone();
    until("the third attempt to succeed", &stats, |s| {
        s.processed.get() == 1
    })
    .await;
    h.shutdown().await;
    assert_eq!(*runs.attempts.lock().unwrap(), [1, 2, 3]);
    assert_eq!(stats.retried.get(), 2);
}

/// A handler that always fails runs exactly `max_attempts` times, then the message is
/// dead-lettered with the reason, the error, the attempts, its origin and failure times.
pub async fn always_failing_is_dead_lettered_after_max_attempts<B: Broker>(broker: &B) {
    let lane = broker.lane(fast_policy(3)).await;
    lane.publish(Some("doomed"), b"x").await;
    let runs = Arc::new(AtomicU32::new(0));
    let engine = memory_engine(Arc::new(MemoryStore::new()), Duration::from_secs(10));
    let r = runs.clone();
    let h = lane
        .consumer()
        .spawn(run(engine, move |_: &Delivery<B::Lane>| {
            r.fetch_add(1, Ordering::SeqCst);
            async { Err::<(), _>("boom: stock service down") }
        }));
    let dead = lane.dead_letter().await;
    h.shutdown().await;
    assert_eq!(runs.load(Ordering::SeqCst), 3);
    assert_eq!(dead.message_id.as_deref(), Some("doomed"));
    assert_eq!(dead.reason, "retries-exhausted");
    assert!(dead.error.contains("boom: stock service down"), "{dead:?}");
    assert_eq!(dead.attempts, 3);
    assert_eq!(dead.original, lane.name());
    assert!(dead.first_failure > 0, "{dead:?}");
    assert!(dead.first_failure <= dead.last_failure, "{dead:?}");
}

/// A message with no key, and one that does not decode, go to the dead-letter path at once
/// with their reasons; the handler never runs.
pub async fn poison_is_dead_lettered_at_once<B: Broker>(broker: &B) {
    let lane = broker.lane(fast_policy(5)).await;
    let runs = Arc::new(AtomicU32::new(0));
    let engine = memory_engine(Arc::new(MemoryStore::new()), Duration::from_secs(10));
    let r = runs.clone();
    let h = lane.consumer().spawn(decoded(
        engine,
        |d: &Delivery<B::Lane>| {
            let text = std::str::from_utf8(d.payload()).map_err(|e| e.to_string())?;
            text.parse::<u64>()
                .map_err(|e| format!("not a number: {e}"))
        },
        move |_n: u64, _: &Delivery<B::Lane>| {
            r.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, String>(()) }
        },
    ));
    lane.publish(None, b"42").await;
    let unkeyed = lane.dead_letter().await;
    lane.publish(Some("garbled"), b"forty-two").await;
    let garbled = lane.dead_letter().await;
    h.shutdown().await;
    assert_eq!(unkeyed.reason, "unkeyable", "{unkeyed:?}");
    assert!(unkeyed.error.contains("message id"), "{unkeyed:?}");
    assert_eq!(garbled.reason, "undecodable", "{garbled:?}");
    assert!(garbled.error.contains("not a number"), "{garbled:?}");
    assert_eq!(garbled.attempts, 1);
    assert_eq!(runs.load(Ordering::SeqCst), 0);
}

/// A copy arriving while the first is being handled is put back, never run alongside it;
/// once the first is done the copy is acked as a duplicate.
pub async fn in_progress_duplicate_is_deferred_never_concurrent<B: Broker>(broker: &B) {
    let lane = broker.lane(fast_policy(5)).await;
    let (runs, mut started) = Runs::new();
    let gate = Gate::new();
    let engine = memory_engine(Arc::new(MemoryStore::new()), Duration::from_secs(10));
    let h = lane
        .consumer()
        .concurrency(4)
        .spawn(run(engine, gated(&runs, &gate)));
    let stats = h.stats().clone();
    lane.publish(Some("twice"), b"x").await;
    started.until("twice").await;
    lane.publish(Some("twice"), b"x").await;
    until("the copy to be put back", &stats, |s| {
        s.redelivered.get() >= 1
    })
    .await;
    gate.open();
    until("both copies to be acked", &stats, |s| {
        s.processed.get() == 1 && s.duplicates.get() == 1
    })
    .await;
    h.shutdown().await;
    assert_eq!(runs.of("twice"), 1);
    assert_eq!(runs.most_at_once.load(Ordering::SeqCst), 1);
}

/// The connection drops while a handler runs: the handler's settle fails, the consumer
/// reconnects, and the redelivered copy is a duplicate: the effect happened once.
pub async fn connection_lost_mid_handler_resumes_and_applies_once<B: Broker>(broker: &B) {
    let lane = broker.lane(fast_policy(5)).await;
    let (runs, mut started) = Runs::new();
    let gate = Gate::new();
    let engine = memory_engine(Arc::new(MemoryStore::new()), Duration::from_secs(10));
    let h = lane
        .consumer()
        .drain_timeout(Duration::from_secs(20))
        .spawn(run(engine, gated(&runs, &gate)));
    let stats = h.stats().clone();
    lane.publish(Some("cut"), b"x").await;
    started.until("cut").await;
    h.disconnect().await;
    // The handler finishes on a dead connection: its record completes, its ack cannot.
    gate.open();
    within("a second session", h.wait_for_session(2)).await;
    until(
        "the redelivered copy to be acked as a duplicate",
        &stats,
        |s| s.duplicates.get() >= 1,
    )
    .await;
    h.shutdown().await;
    assert_eq!(runs.of("cut"), 1);
    assert!(
        stats.unsettled.get() >= 1,
        "the first ack cannot have landed"
    );
}

/// Shutdown lets a running handler finish and settle, and abandons (and counts) one still
/// hung when the drain timeout runs out.
pub async fn shutdown_drains_and_abandons_a_hung_handler<B: Broker>(broker: &B) {
    let lane = broker.lane(fast_policy(5)).await;
    let (runs, mut started) = Runs::new();
    let gate = Gate::new();
    let engine = memory_engine(Arc::new(MemoryStore::new()), Duration::from_secs(10));
    let (r, g) = (runs.clone(), gate.clone());
    let h = lane
        .consumer()
        .concurrency(4)
        .batch(1)
        .drain_timeout(Duration::from_millis(500))
        .spawn(run(engine, move |d: &Delivery<B::Lane>| {
            let id = id_of(d);
            r.start(&id, 1);
            let g = g.clone();
            async move {
                if id == "hung" {
                    std::future::pending::<()>().await;
                }
                g.wait().await;
                Ok::<_, String>(())
            }
        }));
    let stats = h.stats().clone();
    lane.publish(Some("quick"), b"x").await;
    lane.publish(Some("hung"), b"x").await;
    started.until("quick").await;
    started.until("hung").await;
    h.stop();
    gate.open();
    within("shutdown to end within the drain timeout", h.join()).await;
    assert_eq!(stats.processed.get(), 1, "the running handler was drained");
    assert_eq!(stats.abandoned.get(), 1, "the hung handler was abandoned");
    assert_eq!(stats.unsettled.get(), 0);
}

/// Two copies of one key claimed in one batch run once: the second is acked as a duplicate
/// in the same batch, not put back.
pub async fn batch_with_two_copies_of_a_key_runs_it_once<B: Broker>(broker: &B) {
    let lane = broker.lane(fast_policy(5)).await;
    let (runs, mut started) = Runs::new();
    let gate = Gate::new();
    let engine = memory_engine(Arc::new(MemoryStore::new()), Duration::from_secs(10));
    let (r, g) = (runs.clone(), gate.clone());
    // One task at a time: while the gate message holds it, the others wait together.
    let h = lane.consumer().concurrency(1).batch(16).spawn(run(
        engine,
        move |d: &Delivery<B::Lane>| {
            let id = id_of(d);
            r.start(&id, 1);
            r.end();
            let g = g.clone();
            async move {
                if id == "gate" {
                    g.wait().await;
                }
                Ok::<_, String>(())
            }
        },
    ));
    let stats = h.stats().clone();
    lane.publish(Some("gate"), b"g").await;
    started.until("gate").await;
    lane.publish(Some("twin"), b"t").await;
    lane.publish(Some("twin"), b"t").await;
    lane.publish(Some("other"), b"o").await;
    until("every copy to reach the consumer", &stats, |s| {
        s.received.get() >= 4
    })
    .await;
    gate.open();
    until("all four to be acked", &stats, |s| s.acked() == 4).await;
    h.shutdown().await;
    assert_eq!(runs.of("twin"), 1);
    assert_eq!(stats.duplicates.get(), 1);
    assert_eq!(
        stats.redelivered.get(),
        0,
        "the copy was settled in its batch"
    );
    assert!(stats.largest_batch.get() >= 3, "{:?}", stats.largest_batch);
}
