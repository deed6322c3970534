//! The consuming side: concurrent consumer tasks driving deliveries through
//! [`idemq_core::adapter::process`], with injected handler errors and consumer crashes.
//!
//! A crash is modelled as the death of a consumer task in the middle of the handler,
//! before the business transaction commits: the task drops everything it holds. Its claim
//! is neither completed nor released (the lease runs out), its delivery is neither acked nor
//! settled (the broker redelivers it after the visibility timeout), and the business
//! transaction is rolled back. A new task takes the dead one's place.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use idemq_core::adapter::{process, Delivery, Disposition, HandlerFuture, RetryPolicy};
use idemq_core::{Engine, KeyStrategy, Store};
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::broker::{Broker, BrokerError, Received};
use super::chance::Chance;
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
    acked: AtomicU64,
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
    /// Consumer tasks that died holding a claim.
    pub crashes: u64,
    /// Deliveries acked (the broker may still lose some of these acks).
    pub acked: u64,
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
            acked: get(&self.acked),
        }
    }

    fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// Everything the consumer tasks share.
pub struct Consumer<B: Broker> {
    broker: Arc<B>,
    engine: Engine<B::Delivery>,
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
    /// A consumer of `topic` on `broker`, with its engine over `store`.
    pub fn new(
        broker: Arc<B>,
        store: Arc<dyn Store>,
        db: BusinessDb,
        cfg: &super::DemoConfig,
    ) -> Result<Self, DemoError> {
        let engine = Engine::with_shared_store(
            store,
            cfg.engine_config()?,
            KeyStrategy::business(story::order_key::<B::Delivery>),
        );
        Ok(Self {
            broker,
            engine,
            db,
            topic: cfg.topic.clone(),
            policy: cfg.timing.retry.clone(),
            failures: cfg.failures,
            idle_exit: None,
            counters: Arc::new(Counters::default()),
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
            let applied = Arc::new(AtomicBool::new(false));
            let (crash_tx, crash_rx) = oneshot::channel();
            let handler = reduce_stock::<B::Delivery>(
                self.db.clone(),
                self.topic.clone(),
                fault,
                applied.clone(),
                crash_tx,
            );
            tokio::select! {
                settled = process(&self.engine, delivery, &self.policy, handler) => {
                    let disposition = settled.map_err(|e| BrokerError(Box::new(e)))?;
                    self.count(&disposition, applied.load(Ordering::Relaxed));
                }
                // The handler crashed: this task dies here, dropping the engine's future
                // (no complete, no release, no heartbeat) and the delivery (no ack).
                Ok(()) = crash_rx => {
                    Counters::bump(&self.counters.crashes);
                    return Ok(Exit::Crashed);
                }
            }
        }
    }

    /// The fault for one handler run. Faults are transient: the last attempt the retry
    /// policy allows always succeeds, so no order is dead-lettered by bad luck alone.
    fn roll(&self, chance: &mut Chance, attempt: u32) -> Fault {
        if attempt >= self.policy.max_attempts || !chance.happens(self.failures) {
            Fault::None
        } else if chance.below(CRASH_ONE_IN) == 0 {
            Fault::Crash
        } else {
            Fault::Error
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
            match db.reduce_stock(&topic, &order, fault).await {
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
            let db = super::story::BusinessDb::open(&cfg.db, cfg.consumers as u32 + 1).await?;
            let store = cfg.store.open(&cfg.db).await?;
            let consumer = Consumer::new(Arc::new(broker), store, db, cfg)?.idle_exit(idle_exit);
            Ok(Arc::new(consumer).run(cfg.consumers, cfg.seed).await?)
        }
        other => Err(super::broker::not_plugged_in(other)),
    }
}
