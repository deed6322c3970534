//! The consuming side: the consumer runtime ([`idemq_consumer::Consumer`]), exactly as a
//! user's service runs it, with injected handler errors and consumer crashes.
//!
//! A crash is the death of a handler task before the business transaction commits: the
//! handler unwinds ([`std::panic::resume_unwind`], which prints nothing) and drops
//! everything it holds. Its claim is neither completed nor released (the lease runs out; in
//! the business transaction it is rolled back with the rest), its delivery is neither acked
//! nor settled (the broker redelivers it), and the business transaction rolls back. The
//! runtime contains it as it contains any panicking handler. With `--store same` half the
//! crashes come after the handler's writes and result, just before the commit.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use idemq_consumer::{decoded, in_tx, Consumer, ConsumerHandle, Source, Stats};
use idemq_core::adapter::{Delivery, HandlerFuture};
use idemq_core::store::TransactionalStore;
use idemq_core::{Engine, FingerprintStrategy, KeyError, KeyStrategy, Message, TxEngine};

use super::chance::Chance;
use super::db::{receipt, StockWriter};
use super::dedup::{with_tx_store, Dedup};
use super::story::{self, BusinessDb, Fault, HandlerError, Order};
use super::{DemoConfig, DemoError, Topic};
use crate::url::BrokerUrl;

/// One in this many injected failures is a crash; the others are handler errors.
const CRASH_ONE_IN: u64 = 4;

/// What a crashing handler unwinds with.
struct InjectedCrash;

/// The fault injection, shared by every handler of one consumer.
pub struct Faults {
    failures: f64,
    max_attempts: u32,
    in_tx: bool,
    chance: Mutex<Chance>,
    crashes: AtomicU64,
    crashes_after_write: AtomicU64,
}

impl Faults {
    fn new(cfg: &DemoConfig, in_tx: bool) -> Self {
        Self {
            failures: cfg.failures,
            max_attempts: cfg.timing.retry.max_attempts,
            in_tx,
            chance: Mutex::new(Chance::fork(cfg.seed, 0)),
            crashes: AtomicU64::new(0),
            crashes_after_write: AtomicU64::new(0),
        }
    }

    /// The fault for one handler run. Faults are transient: the last attempt the retry
    /// policy allows always succeeds, so no order is dead-lettered by bad luck alone.
    /// With the record in the business transaction, half the crashes come after the
    /// handler's writes, before the commit.
    fn roll(&self, attempt: u32) -> Fault {
        let mut chance = self.chance.lock().unwrap_or_else(|e| e.into_inner());
        if attempt >= self.max_attempts || !chance.happens(self.failures) {
            Fault::None
        } else if chance.below(CRASH_ONE_IN) != 0 {
            Fault::Error
        } else if self.in_tx && chance.happens(0.5) {
            Fault::CrashAfterWrite
        } else {
            Fault::Crash
        }
    }

    /// Dies here: the handler task unwinds without a word.
    fn crash(&self, fault: Fault) -> ! {
        let counter = match fault {
            Fault::CrashAfterWrite => &self.crashes_after_write,
            _ => &self.crashes,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        std::panic::resume_unwind(Box::new(InjectedCrash))
    }
}

/// A snapshot of what a consumer did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Deliveries received.
    pub deliveries: u64,
    /// Business transactions committed and recorded.
    pub effects_applied: u64,
    /// Deliveries acked without running the handler: the key was consumed already.
    pub duplicates_skipped: u64,
    /// Deliveries put back because another consumer held the key (or the store failed).
    pub deferrals: u64,
    /// Handler errors retried with backoff.
    pub retries: u64,
    /// Deliveries dead-lettered.
    pub dead_lettered: u64,
    /// Handler tasks that died in the handler, after writing and before the commit.
    pub crashes: u64,
    /// Handler tasks that died after the handler's writes returned, before the commit that
    /// also marks the key (only with the record in the business transaction).
    pub crashes_after_write: u64,
    /// Deliveries acked (the broker may still lose some of these acks).
    pub acked: u64,
    /// Whether the records were written in the business transaction (`--store same`).
    pub in_tx: bool,
}

impl Tally {
    /// The counts of a consumer's runtime stats and its faults.
    pub fn of(stats: &Stats, faults: &Faults) -> Self {
        Self {
            deliveries: stats.received.get(),
            effects_applied: stats.processed.get(),
            duplicates_skipped: stats.duplicates.get(),
            deferrals: stats.redelivered.get(),
            retries: stats.retried.get(),
            dead_lettered: stats.dead_lettered.get(),
            crashes: faults.crashes.load(Ordering::Relaxed),
            crashes_after_write: faults.crashes_after_write.load(Ordering::Relaxed),
            acked: stats.acked(),
            in_tx: faults.in_tx,
        }
    }
}

/// A running demo consumer: the runtime's handle and the faults it injects.
pub struct Running {
    /// The runtime consumer.
    pub handle: ConsumerHandle,
    /// Its fault injection.
    pub faults: Arc<Faults>,
}

impl Running {
    /// Waits for the consumer to stop on its own (its source finished, or idle long
    /// enough), then returns its counts.
    pub async fn finish(self) -> Tally {
        let stats = self.handle.stats().clone();
        self.handle.join().await;
        Tally::of(&stats, &self.faults)
    }
}

/// Starts the story's consumer on `source`: `cfg.consumers` handlers at once, recording
/// keys as `dedup` says, stopping once idle for `idle_exit` (or when the source finishes).
pub fn spawn<S: Source>(
    source: S,
    dedup: Dedup,
    db: BusinessDb,
    cfg: &DemoConfig,
    idle_exit: Option<Duration>,
) -> Result<Running, DemoError> {
    let config = cfg.engine_config()?;
    // One delivery per task: an injected crash is a panic, which takes its task down, and
    // the tally counts what each task settled.
    let consumer = Consumer::new(source, cfg.timing.retry.clone())
        .concurrency(cfg.consumers)
        .batch(1)
        .idle_exit(idle_exit)
        .name(format!("idemq-demo.{}", cfg.topic));
    let keys = KeyStrategy::business(story::order_key::<S::Delivery>);
    let in_tx = matches!(dedup, Dedup::InTx(_));
    let faults = Arc::new(Faults::new(cfg, in_tx));
    let topic = cfg.topic.clone();
    let handle = match dedup {
        Dedup::Separate(store) => {
            let engine = Engine::with_shared_store(store, config, keys)
                .fingerprint(FingerprintStrategy::extract(order_fingerprint));
            separate(consumer, engine, db, topic, faults.clone())
        }
        Dedup::InTx(tx) => with_tx_store!(tx, |store| {
            let engine = TxEngine::new(store, config, keys)
                .fingerprint(FingerprintStrategy::extract(order_fingerprint));
            in_business_tx(consumer, engine, topic, faults.clone())
        }),
    };
    Ok(Running { handle, faults })
}

/// The order a message carries, in one canonical form: a producer's resend with another
/// serializer (spacing, field order) fingerprints the same.
fn order_fingerprint<M: Message>(msg: &M) -> Result<Vec<u8>, KeyError> {
    let order = Order::decode(msg.payload()).map_err(|e| KeyError::Extractor(e.to_string()))?;
    Ok(order.encode().to_vec())
}

fn decode<D: Delivery>(d: &D) -> Result<Order, String> {
    Order::decode(d.payload()).map_err(|e| e.to_string())
}

/// The handler with its own transaction, under the engine's claim.
fn separate<S: Source>(
    consumer: Consumer<S>,
    engine: Engine<S::Delivery>,
    db: BusinessDb,
    topic: Topic,
    faults: Arc<Faults>,
) -> ConsumerHandle {
    consumer.spawn(decoded(
        engine,
        decode::<S::Delivery>,
        move |order: Order, d: &S::Delivery| {
            let fault = faults.roll(d.attempt());
            let (db, topic, faults) = (db.clone(), topic.clone(), faults.clone());
            async move {
                let crash_before_commit = match fault {
                    Fault::Error => Some(HandlerError::Injected),
                    Fault::Crash => Some(HandlerError::Crashed),
                    // Never rolled for a separate store: there it would apply the order twice.
                    Fault::None | Fault::CrashAfterWrite => None,
                };
                match db.reduce_stock(&topic, &order, crash_before_commit).await {
                    Err(HandlerError::Crashed) => faults.crash(fault),
                    done => done,
                }
            }
        },
    ))
}

/// The handler writing in the store's transaction, through the runtime's `in_tx`.
fn in_business_tx<St, S>(
    consumer: Consumer<S>,
    engine: TxEngine<St, S::Delivery>,
    topic: Topic,
    faults: Arc<Faults>,
) -> ConsumerHandle
where
    St: TransactionalStore + Sync,
    St::Conn: StockWriter,
    S: Source,
{
    let rolls = faults.clone();
    let decode = move |d: &S::Delivery| Ok((decode(d)?, rolls.roll(d.attempt())));
    consumer.spawn(in_tx(engine, decode, writes::<St::Conn>(topic, faults)))
}

/// The handler on the store's open transaction.
fn writes<C: StockWriter>(
    topic: Topic,
    faults: Arc<Faults>,
) -> impl for<'t> Fn((Order, Fault), &'t mut C) -> HandlerFuture<'t, String, HandlerError>
       + Send
       + Sync
       + 'static {
    move |(order, fault): (Order, Fault), conn: &mut C| -> HandlerFuture<'_, String, HandlerError> {
        let (topic, faults) = (topic.clone(), faults.clone());
        Box::pin(async move {
            let left = conn.reduce(&topic, &order).await?;
            match fault {
                Fault::None => Ok(receipt(&order, left)),
                Fault::Error => Err(HandlerError::Injected),
                // The writes are done (and, after write, the result too): dying here, before
                // the store marks the key and commits, loses them with the claim.
                Fault::Crash | Fault::CrashAfterWrite => faults.crash(fault),
            }
        })
    }
}

/// Runs the demo's consumer on `source` until it is idle for `idle_exit` (or forever).
async fn consume_from<S: Source>(
    source: S,
    cfg: &DemoConfig,
    idle_exit: Option<Duration>,
) -> Result<Tally, DemoError> {
    let db = BusinessDb::open(&cfg.db, cfg.consumers as u32 + 1).await?;
    let dedup = Dedup::open(&cfg.store, &db).await?;
    let running = spawn(source, dedup, db, cfg, idle_exit)?;
    Ok(running.finish().await)
}

/// `demo consume`: consumes from the broker `cfg.broker` names until it is idle for
/// `idle_exit` (or forever). Broker adapters plug in here, each with its own source.
pub async fn consume_on(cfg: &DemoConfig, idle_exit: Option<Duration>) -> Result<Tally, DemoError> {
    cfg.validate()?;
    match &cfg.broker {
        BrokerUrl::Memory => Err(DemoError::NeedsRealBroker { command: "consume" }),
        BrokerUrl::Amqp(url) => {
            use super::broker::Broker as _;
            let prefetch = u16::try_from(cfg.consumers * 2).unwrap_or(u16::MAX);
            // Connects the publisher side: a broker that is down is reported at once.
            let broker = super::broker::amqp::AmqpBroker::connect(
                url,
                &cfg.topic,
                &cfg.timing.retry,
                prefetch,
            )
            .await?;
            consume_from(broker.source(), cfg, idle_exit).await
        }
        BrokerUrl::RocketMq(url) => {
            use super::broker::Broker as _;
            // One listener call holds at most one message per handler slot.
            let batch = u32::try_from(cfg.consumers).unwrap_or(1);
            let broker = super::broker::rocketmq::RocketBroker::connect(
                url,
                &cfg.topic,
                &cfg.timing.retry,
                batch,
            )
            .await?;
            let tally = consume_from(broker.source(), cfg, idle_exit).await;
            broker.shutdown().await;
            tally
        }
        BrokerUrl::Kafka(url) => {
            use super::broker::Broker as _;
            let broker =
                super::broker::kafka::KafkaBroker::connect(url, &cfg.topic, &cfg.timing.retry, 64)
                    .await?;
            consume_from(broker.source(), cfg, idle_exit).await
        }
        other => Err(super::broker::not_plugged_in(other)),
    }
}
