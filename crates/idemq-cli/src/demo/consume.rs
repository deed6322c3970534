//! The consuming side: concurrent consumer tasks driving deliveries through the engine
//! ([`idemq_core::adapter::process`]) or, with the record in the business transaction,
//! through the store's `run_in_tx` and [`idemq_core::adapter::settle`], with injected
//! handler errors and consumer crashes.
//!
//! A crash is modelled as the death of a consumer task before the business transaction
//! commits: the task drops everything it holds. Its claim is neither completed nor released
//! (the lease runs out; in the business transaction it is rolled back with the rest), its
//! delivery is neither acked nor settled (the broker redelivers it after the visibility
//! timeout), and the business transaction is rolled back. A new task takes the dead one's
//! place. With `--store same` half the crashes come after the handler's writes, between
//! its return and the commit.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use idemq_core::adapter::{process, settle, Delivery, Disposition, HandlerFuture, RetryPolicy};
use idemq_core::{Engine, EngineError, KeyError, KeyStrategy, Message, Outcome};
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::broker::{Broker, BrokerError, Received};
use super::chance::Chance;
use super::dedup::{Dedup, InTx};
use super::story::{self, BusinessDb, Fault, HandlerError, Order};
use super::{DemoError, Topic};
use crate::url::BrokerUrl;

/// How long one receive waits before a task looks at the idle clock again.
const POLL: Duration = Duration::from_millis(250);

/// One in this many injected failures is a crash; the others are handler errors.
const CRASH_ONE_IN: u64 = 4;

/// Live counts of what the consumers did.
#[derive(Debug, Default)]
pub struct Counters {
    deliveries: AtomicU64,
    effects_applied: AtomicU64,
    duplicates_skipped: AtomicU64,
    deferrals: AtomicU64,
    retries: AtomicU64,
    dead_lettered: AtomicU64,
    crashes: AtomicU64,
    crashes_after_write: AtomicU64,
    acked: AtomicU64,
    in_tx: AtomicBool,
}

/// A snapshot of [`Counters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Deliveries received.
    pub deliveries: u64,
    /// Business transactions committed.
    pub effects_applied: u64,
    /// Deliveries acked without running the handler: the key was consumed already.
    pub duplicates_skipped: u64,
    /// Deliveries put back because another consumer held the key (or the store failed).
    pub deferrals: u64,
    /// Handler errors retried with backoff.
    pub retries: u64,
    /// Deliveries dead-lettered.
    pub dead_lettered: u64,
    /// Consumer tasks that died in the handler, after writing and before the commit.
    pub crashes: u64,
    /// Consumer tasks that died after the handler's writes returned, before the commit
    /// that also marks the key (only with the record in the business transaction).
    pub crashes_after_write: u64,
    /// Deliveries acked (the broker may still lose some of these acks).
    pub acked: u64,
    /// Whether the records were written in the business transaction (`--store same`).
    pub in_tx: bool,
}

impl Counters {
    /// The counts so far.
    pub fn tally(&self) -> Tally {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Tally {
            deliveries: get(&self.deliveries),
            effects_applied: get(&self.effects_applied),
            duplicates_skipped: get(&self.duplicates_skipped),
            deferrals: get(&self.deferrals),
            retries: get(&self.retries),
            dead_lettered: get(&self.dead_lettered),
            crashes: get(&self.crashes),
            crashes_after_write: get(&self.crashes_after_write),
            acked: get(&self.acked),
            in_tx: self.in_tx.load(Ordering::Relaxed),
        }
    }

    fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// How a consumer records keys: see [`super::dedup`].
enum Mode<D> {
    /// The engine around the handler's own transaction.
    Separate(Engine<D>),
    /// The store's `run_in_tx`; the engine over the same store keys each delivery.
    InTx {
        store: Arc<dyn InTx>,
        engine: Engine<D>,
    },
}

/// Everything the consumer tasks share.
pub struct Consumer<B: Broker> {
    broker: Arc<B>,
    mode: Mode<B::Delivery>,
    db: BusinessDb,
    topic: Topic,
    policy: RetryPolicy,
    failures: f64,
    idle_exit: Option<Duration>,
    counters: Arc<Counters>,
    started: Instant,
    // Milliseconds after `started` of the last delivery, for the idle exit.
    last_activity: AtomicU64,
}

impl<B: Broker> Consumer<B> {
    /// A consumer of `cfg.topic` on `broker`, recording keys as `dedup` says.
    pub fn new(
        broker: Arc<B>,
        dedup: Dedup,
        db: BusinessDb,
        cfg: &super::DemoConfig,
    ) -> Result<Self, DemoError> {
        let config = cfg.engine_config()?;
        let keys = KeyStrategy::business(story::order_key::<B::Delivery>);
        let counters = Arc::new(Counters::default());
        let mode = match dedup {
            Dedup::Separate(store) => {
                Mode::Separate(Engine::with_shared_store(store, config, keys))
            }
            Dedup::InTx(store) => {
                counters.in_tx.store(true, Ordering::Relaxed);
                let engine = Engine::with_shared_store(store.clone(), config, keys);
                Mode::InTx { store, engine }
            }
        };
        Ok(Self {
            broker,
            mode,
            db,
            topic: cfg.topic.clone(),
            policy: cfg.timing.retry.clone(),
            failures: cfg.failures,
            idle_exit: None,
            counters,
            started: Instant::now(),
            last_activity: AtomicU64::new(0),
        })
    }

    /// Makes the consumers stop once nothing was delivered for `idle`.
    pub fn idle_exit(mut self, idle: Option<Duration>) -> Self {
        self.idle_exit = idle;
        self
    }

    /// The live counters.
    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    /// Runs `tasks` consumer tasks until the broker is closed and drained (or idle long
    /// enough), replacing each task that crashes. Returns the final counts.
    pub async fn run(self: Arc<Self>, tasks: usize, seed: u64) -> Result<Tally, DemoError> {
        let mut set = JoinSet::new();
        let mut spawned = 0u64;
        let mut spawn = |set: &mut JoinSet<_>| {
            let me = self.clone();
            let chance = Chance::fork(seed, spawned);
            spawned += 1;
            set.spawn(async move { me.worker(chance).await });
        };
        for _ in 0..tasks {
            spawn(&mut set);
        }
        while let Some(joined) = set.join_next().await {
            match joined.expect("consumer tasks do not panic") {
                Ok(Exit::Crashed) => spawn(&mut set),
                Ok(Exit::Done) => {}
                Err(e) => {
                    set.abort_all();
                    return Err(e.into());
                }
            }
        }
        Ok(self.counters.tally())
    }

    async fn worker(&self, mut chance: Chance) -> Result<Exit, BrokerError> {
        loop {
            let delivery = match self.broker.recv(POLL).await? {
                Received::Delivery(d) => d,
                Received::Closed => return Ok(Exit::Done),
                Received::Idle => match self.idle_exit {
                    Some(idle) if self.idle_for() >= idle => return Ok(Exit::Done),
                    _ => continue,
                },
            };
            Counters::bump(&self.counters.deliveries);
            self.touch();
            let fault = self.roll(&mut chance, delivery.attempt());
            let (crash_tx, crash_rx) = oneshot::channel();
            let settled = match &self.mode {
                Mode::Separate(engine) => {
                    let applied = Arc::new(AtomicBool::new(false));
                    let handler = reduce_stock::<B::Delivery>(
                        self.db.clone(),
                        self.topic.clone(),
                        fault,
                        applied.clone(),
                        crash_tx,
                    );
                    tokio::select! {
                        settled = process(engine, delivery, &self.policy, handler) => {
                            Some((settled, applied.load(Ordering::Relaxed)))
                        }
                        Ok(()) = crash_rx => None,
                    }
                }
                Mode::InTx { store, engine } => {
                    let run = self.in_tx(&**store, engine, &delivery, fault, crash_tx);
                    tokio::select! {
                        // Looked at first, so a crash asked for by the handler is taken before
                        // the store's future is polled again.
                        biased;
                        Ok(()) = crash_rx => None,
                        result = run => {
                            let applied = matches!(result, Ok(Outcome::Processed { .. }));
                            Some((settle(delivery, &result, &self.policy).await, applied))
                        }
                    }
                }
            };
            match settled {
                Some((settled, applied)) => {
                    let disposition = settled.map_err(|e| BrokerError(Box::new(e)))?;
                    self.count(&disposition, applied);
                }
                // The handler crashed: this task dies here, dropping the engine's or the
                // store's future (no complete, no release, no heartbeat, no commit) and the
                // delivery (no ack).
                None => {
                    let c = &self.counters;
                    Counters::bump(match fault {
                        Fault::CrashAfterWrite => &c.crashes_after_write,
                        _ => &c.crashes,
                    });
                    return Ok(Exit::Crashed);
                }
            }
        }
    }

    /// The run of one delivery in the business transaction, keyed and fingerprinted by the
    /// engine, so both paths share one record per order.
    fn in_tx<'a>(
        &self,
        store: &'a dyn InTx,
        engine: &'a Engine<B::Delivery>,
        delivery: &B::Delivery,
        fault: Fault,
        crash: oneshot::Sender<()>,
    ) -> impl std::future::Future<Output = Result<Outcome<HandlerError>, EngineError>> + 'a {
        let prepared = engine.identify(delivery).and_then(|(key, fingerprint)| {
            let order = Order::decode(delivery.payload())
                .map_err(|e| KeyError::Extractor(e.to_string()))?;
            Ok((key.key, fingerprint, order))
        });
        let topic = self.topic.clone();
        async move {
            let (key, fingerprint, order) = prepared?;
            store
                .reduce_stock(
                    engine.config(),
                    key,
                    fingerprint,
                    topic,
                    order,
                    fault,
                    crash,
                )
                .await
        }
    }

    /// The fault for one handler run. Faults are transient: the last attempt the retry
    /// policy allows always succeeds, so no order is dead-lettered by bad luck alone.
    /// With the record in the business transaction, half the crashes come after the
    /// handler's writes, before the commit.
    fn roll(&self, chance: &mut Chance, attempt: u32) -> Fault {
        if attempt >= self.policy.max_attempts || !chance.happens(self.failures) {
            Fault::None
        } else if chance.below(CRASH_ONE_IN) != 0 {
            Fault::Error
        } else if matches!(self.mode, Mode::InTx { .. }) && chance.happens(0.5) {
            Fault::CrashAfterWrite
        } else {
            Fault::Crash
        }
    }

    fn count(&self, disposition: &Disposition, applied: bool) {
        let c = &self.counters;
        if applied {
            Counters::bump(&c.effects_applied);
        }
        match disposition {
            Disposition::Ack => {
                Counters::bump(&c.acked);
                if !applied {
                    Counters::bump(&c.duplicates_skipped);
                }
            }
            Disposition::Redeliver { .. } => Counters::bump(&c.deferrals),
            Disposition::Retry { .. } => Counters::bump(&c.retries),
            Disposition::DeadLetter(_) => Counters::bump(&c.dead_lettered),
        }
    }

    fn touch(&self) {
        let ms = self.started.elapsed().as_millis() as u64;
        self.last_activity.fetch_max(ms, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_activity.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last)
    }
}

/// How a consumer task ended.
enum Exit {
    /// The queue is closed and drained, or idle long enough.
    Done,
    /// The task died in the handler.
    Crashed,
}

/// The handler given to [`process`]: decode the order and reduce its stock. On an
/// injected crash it tells its task to die and never returns.
fn reduce_stock<D: Delivery>(
    db: BusinessDb,
    topic: Topic,
    fault: Fault,
    applied: Arc<AtomicBool>,
    crash: oneshot::Sender<()>,
) -> impl for<'a> FnOnce(&'a D) -> HandlerFuture<'a, String, HandlerError> {
    move |delivery: &D| -> HandlerFuture<'_, String, HandlerError> {
        Box::pin(async move {
            let order = Order::decode(delivery.payload())?;
            let crash_before_commit = match fault {
                Fault::Error => Some(HandlerError::Injected),
                Fault::Crash => Some(HandlerError::Crashed),
                // Never rolled for a separate store: there it would apply the order twice.
                Fault::None | Fault::CrashAfterWrite => None,
            };
            match db.reduce_stock(&topic, &order, crash_before_commit).await {
                Ok(left) => {
                    applied.store(true, Ordering::Relaxed);
                    Ok(left)
                }
                Err(HandlerError::Crashed) => {
                    let _ = crash.send(());
                    std::future::pending().await
                }
                Err(e) => Err(e),
            }
        })
    }
}

/// `demo consume`: consumes from the broker `cfg.broker` names until it is idle for
/// `idle_exit` (or forever). Broker adapters plug in here, each with its own [`Broker`].
pub async fn consume_on(
    cfg: &super::DemoConfig,
    idle_exit: Option<Duration>,
) -> Result<Tally, DemoError> {
    cfg.validate()?;
    match &cfg.broker {
        BrokerUrl::Memory => Err(DemoError::NeedsRealBroker { command: "consume" }),
        BrokerUrl::Amqp(url) => {
            let prefetch = u16::try_from(cfg.consumers * 2).unwrap_or(u16::MAX);
            let broker = super::broker::amqp::AmqpBroker::connect(
                url,
                &cfg.topic,
                &cfg.timing.retry,
                prefetch,
            )
            .await?;
            broker.start_receiving().await?;
            let db = BusinessDb::open(&cfg.db, cfg.consumers as u32 + 1).await?;
            let dedup = Dedup::open(&cfg.store, &db).await?;
            let consumer = Consumer::new(Arc::new(broker), dedup, db, cfg)?.idle_exit(idle_exit);
            Ok(Arc::new(consumer).run(cfg.consumers, cfg.seed).await?)
        }
        other => Err(super::broker::not_plugged_in(other)),
    }
}
