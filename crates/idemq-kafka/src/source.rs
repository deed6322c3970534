//! The Kafka source of the consumer runtime: one consumer-group member per session.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{self, AtomicBool};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::FutureExt;
use idemq_consumer::tracker::{KeyedQueue, PartitionLog};
use idemq_consumer::{Closer, Consumer, Session, Source};
use idemq_core::adapter::RetryPolicy;
use idemq_core::time::now_ms;
use rdkafka::consumer::{CommitMode, Consumer as _, StreamConsumer};
use rdkafka::message::OwnedMessage;
use rdkafka::{ClientConfig, Message as _};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::{watch, Notify};

use crate::admin::create_topics;
use crate::context::{commit_settled, GroupContext};
use crate::delivery::{Again, KafkaDelivery, Shared};
use crate::error::KafkaError;
use crate::names::{check_name, dead_letter_topic, retry_topic};
use crate::ordering::{Lane, LaneGuard, Ordering, Retries};
use crate::producer::Producer;

/// How long settled offsets gather before one commit covers them all, by default.
const COMMIT_EVERY: Duration = Duration::from_millis(50);
/// How many records may wait behind their lanes before the session stops reading.
const MAX_WAITING: usize = 4096;

/// A topic consumed by a consumer group, as a source of the consumer runtime.
///
/// Each session is one group member subscribed to the topic and its retry topic, with
/// auto-commit off: a partition's offset is committed only past records that are settled
/// (acked, or moved to the retry or dead-letter topic), whatever order their handlers
/// finish in (the runtime's [`PartitionLog`]). A poll batch (up to [`batch`](Self::batch)
/// records ready together) is claimed with one `claim_batch`. By default a partition runs
/// one record at a time, in offset order ([`Ordering`]); failed records are retried
/// through the retry topic or in place ([`Retries`]).
#[derive(Debug, Clone)]
pub struct KafkaSource {
    bootstrap: String,
    topic: String,
    group: String,
    policy: RetryPolicy,
    batch: usize,
    partitions: i32,
    create_topics: bool,
    commit_every: Duration,
    ordering: Ordering,
    retries: Retries,
    config: Vec<(String, String)>,
}

impl KafkaSource {
    /// `topic` consumed by `group` from the cluster at `bootstrap`, retrying with `policy`.
    pub fn new(
        bootstrap: impl Into<String>,
        topic: impl Into<String>,
        group: impl Into<String>,
        policy: RetryPolicy,
    ) -> Result<Self, KafkaError> {
        let (topic, group) = (topic.into(), group.into());
        check_name("topic", &topic)?;
        check_name("consumer group", &group)?;
        Ok(Self {
            bootstrap: bootstrap.into(),
            topic,
            group,
            policy,
            batch: 64,
            partitions: 4,
            create_topics: true,
            commit_every: COMMIT_EVERY,
            ordering: Ordering::default(),
            retries: Retries::default(),
            config: Vec::new(),
        })
    }

    /// Which records of a partition wait for which (default [`Ordering::Partition`]).
    pub fn ordering(mut self, ordering: Ordering) -> Self {
        self.ordering = ordering;
        self
    }

    /// Where a failed record waits for its next attempt (default [`Retries::Topic`]).
    pub fn retries(mut self, retries: Retries) -> Self {
        self.retries = retries;
        self
    }

    /// At most `n` records ready together make one batch (default 64).
    pub fn batch(mut self, n: usize) -> Self {
        self.batch = n.max(1);
        self
    }

    /// Partitions of the retry and dead-letter topics when a session creates them
    /// (default 4).
    pub fn retry_partitions(mut self, n: i32) -> Self {
        self.partitions = n.max(1);
        self
    }

    /// How long settled offsets gather before one commit covers them (default 50 ms):
    /// longer means fewer commits and more records read again after a crash.
    pub fn commit_interval(mut self, every: Duration) -> Self {
        self.commit_every = every;
        self
    }

    /// Whether a session creates the retry and dead-letter topics when they are missing
    /// (default true; turn it off where they are made otherwise, or topics may not be
    /// created by clients).
    pub fn create_topics(mut self, on: bool) -> Self {
        self.create_topics = on;
        self
    }

    /// Sets a librdkafka consumer property (`session.timeout.ms`, `security.protocol`...).
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.push((key.into(), value.into()));
        self
    }

    /// A runtime consumer of this source.
    pub fn consumer(self) -> Consumer<Self> {
        let policy = self.policy.clone();
        let name = format!("{}@{}", self.group, self.topic);
        let batch = self.batch;
        Consumer::new(self, policy).name(name).batch(batch)
    }
}

impl Source for KafkaSource {
    type Delivery = KafkaDelivery;
    type Error = KafkaError;
    type Session = KafkaSession;

    async fn open(&self) -> Result<KafkaSession, KafkaError> {
        let (retry, dead) = (retry_topic(&self.topic), dead_letter_topic(&self.topic));
        if self.create_topics {
            create_topics(&self.bootstrap, &[&retry, &dead], self.partitions).await?;
        }
        let log = PartitionLog::new();
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap)
            .set("group.id", &self.group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000")
            .set("fetch.wait.max.ms", "100");
        for (k, v) in &self.config {
            config.set(k, v);
        }
        let abandoned = Arc::new(AtomicBool::new(false));
        let consumer: StreamConsumer<GroupContext> = config.create_with_context(GroupContext {
            log: log.clone(),
            abandoned: abandoned.clone(),
        })?;
        consumer.subscribe(&[&self.topic, &retry])?;
        let (again, again_rx) = unbounded_channel();
        let (free, free_rx) = unbounded_channel();
        let shared = Arc::new(Shared {
            log,
            producer: Producer::new(&self.bootstrap)?,
            topic: self.topic.clone(),
            retry_topic: retry,
            dead_letter_topic: dead,
            commit: Notify::new(),
            closed: AtomicBool::new(false),
            retries: self.retries,
            again,
        });
        let consumer = Arc::new(consumer);
        let (closed, closing) = watch::channel(false);
        tokio::spawn(committer(
            Arc::downgrade(&consumer),
            shared.clone(),
            self.commit_every,
            closing.clone(),
        ));
        Ok(KafkaSession {
            consumer,
            shared,
            batch: self.batch,
            ordering: self.ordering.clone(),
            lanes: KeyedQueue::new(),
            free,
            free_rx,
            again_rx,
            held: BinaryHeap::new(),
            seq: 0,
            closed: Arc::new(closed),
            closing,
            draining: Arc::new(AtomicBool::new(false)),
            abandoned,
        })
    }
}

/// Commits what settled, a little after it settled, until the session closes.
///
/// It holds the consumer weakly, as the closer does: the session owns it, so the member
/// leaves the group as soon as the session is dropped (a lingering member holds its
/// partitions until the broker's session timeout).
async fn committer(
    consumer: Weak<StreamConsumer<GroupContext>>,
    shared: Arc<Shared>,
    every: Duration,
    mut closing: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = shared.commit.notified() => {}
            _ = closing.wait_for(|c| *c) => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = closing.wait_for(|c| *c) => return,
        }
        let Some(consumer) = consumer.upgrade() else {
            return;
        };
        commit_settled(consumer.as_ref(), &shared.log, CommitMode::Async);
    }
}

/// A retry copy, or a record retried in place, held back until it is due.
struct Held {
    due: i64,
    seq: u64,
    delivery: KafkaDelivery,
}

impl PartialEq for Held {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Held {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due, self.seq).cmp(&(other.due, other.seq))
    }
}

/// What woke a session waiting in `recv`.
enum Woke {
    Record(OwnedMessage),
    Free(Lane),
    Again(Again),
    Due,
}

/// One group member's stream of deliveries.
pub struct KafkaSession {
    consumer: Arc<StreamConsumer<GroupContext>>,
    shared: Arc<Shared>,
    batch: usize,
    ordering: Ordering,
    /// Records waiting for the record of their lane that runs.
    lanes: KeyedQueue<Lane, KafkaDelivery>,
    free: UnboundedSender<Lane>,
    /// Lanes whose running record is done with.
    free_rx: UnboundedReceiver<Lane>,
    /// Records retried in place.
    again_rx: UnboundedReceiver<Again>,
    held: BinaryHeap<Reverse<Held>>,
    seq: u64,
    closed: Arc<watch::Sender<bool>>,
    closing: watch::Receiver<bool>,
    /// Set by `cancel`: the runtime is shutting down, not failing.
    draining: Arc<AtomicBool>,
    /// Shared with the rebalance callbacks: set by a close without a drain.
    abandoned: Arc<AtomicBool>,
}

impl KafkaSession {
    /// Tracks a record and files it: ready now, waiting behind its lane, or held until its
    /// due time.
    fn admit(&mut self, record: OwnedMessage, ready: &mut Vec<KafkaDelivery>) {
        let part = (record.topic().to_owned(), record.partition());
        let offset = record.offset();
        tracing::trace!(topic = %part.0, partition = part.1, offset, "record");
        let ticket = match self.shared.log.track(part.clone(), offset) {
            Ok(ticket) => ticket,
            // Read again from an earlier offset (a seek, a reassignment without a revoke):
            // start the partition afresh.
            Err(_) => {
                self.shared.log.revoke_now(&part);
                self.shared
                    .log
                    .track(part.clone(), offset)
                    .expect("a forgotten partition tracks any offset")
            }
        };
        // Retry copies are out of order already: they wait only for their due time.
        let lane = if part.0 == self.shared.retry_topic {
            None
        } else {
            self.ordering.lane(&part, &record)
        };
        let delivery = KafkaDelivery::new(record, ticket, self.shared.clone());
        if let Some(lane) = lane {
            if let Some(delivery) = self.lanes.admit(lane.clone(), delivery) {
                self.run(lane, delivery, ready);
            }
            return;
        }
        match delivery.due().filter(|due| *due > now_ms()) {
            Some(due) => self.hold(due, delivery),
            None => ready.push(delivery),
        }
    }

    /// Hands out the record that now holds `lane`.
    fn run(&self, lane: Lane, mut delivery: KafkaDelivery, ready: &mut Vec<KafkaDelivery>) {
        delivery.hold(LaneGuard::new(lane, self.free.clone()));
        ready.push(delivery);
    }

    /// `lane`'s record is done with: hands out the next one still in flight. Records of a
    /// partition revoked since they arrived are skipped (its next owner reads them).
    fn release(&mut self, lane: Lane, ready: &mut Vec<KafkaDelivery>) {
        while let Some(next) = self.lanes.finish(&lane) {
            if next.is_current() {
                self.run(lane, next, ready);
                return;
            }
        }
    }

    fn hold(&mut self, due: i64, delivery: KafkaDelivery) {
        self.seq += 1;
        self.held.push(Reverse(Held {
            due,
            seq: self.seq,
            delivery,
        }));
    }

    fn take_due(&mut self, ready: &mut Vec<KafkaDelivery>) {
        let now = now_ms();
        while self.held.peek().is_some_and(|h| h.0.due <= now) {
            if let Some(Reverse(h)) = self.held.pop() {
                if h.delivery.is_current() {
                    ready.push(h.delivery);
                }
            }
        }
    }
}

impl Session for KafkaSession {
    type Delivery = KafkaDelivery;
    type Error = KafkaError;

    /// Cancel-safe: nothing is held in the future across an await, so a dropped `recv`
    /// loses no record.
    async fn recv(&mut self) -> Result<Option<Vec<KafkaDelivery>>, KafkaError> {
        loop {
            let mut ready = Vec::new();
            self.take_due(&mut ready);
            if !ready.is_empty() {
                return Ok(Some(ready));
            }
            let next_due = self.held.peek().map(|h| h.0.due);
            let wait = next_due.map_or(Duration::from_secs(3600), |due| {
                Duration::from_millis(due.saturating_sub(now_ms()).max(0) as u64)
            });
            let consumer = self.consumer.clone();
            let mut closing = self.closing.clone();
            let reading = self.lanes.held() < MAX_WAITING;
            let woke = tokio::select! {
                m = consumer.recv(), if reading => Woke::Record(m?.detach()),
                Some(lane) = self.free_rx.recv() => Woke::Free(lane),
                Some(again) = self.again_rx.recv() => Woke::Again(again),
                _ = tokio::time::sleep(wait) => Woke::Due,
                _ = closing.wait_for(|c| *c) => return Err(KafkaError::Closed),
            };
            match woke {
                Woke::Record(record) => self.admit(record, &mut ready),
                Woke::Free(lane) => self.release(lane, &mut ready),
                Woke::Again(again) => self.hold(again.due, again.delivery),
                Woke::Due => {}
            }
            // Whatever else is ready joins the batch, without waiting.
            while let Ok(lane) = self.free_rx.try_recv() {
                self.release(lane, &mut ready);
            }
            while ready.len() < self.batch && self.lanes.held() < MAX_WAITING {
                match consumer.recv().now_or_never() {
                    Some(m) => {
                        let record = m?.detach();
                        self.admit(record, &mut ready);
                    }
                    None => break,
                }
            }
            if !ready.is_empty() {
                return Ok(Some(ready));
            }
        }
    }

    /// Pauses every assigned partition: nothing more is fetched while the runtime drains.
    async fn cancel(&mut self) {
        self.draining.store(true, atomic::Ordering::SeqCst);
        if let Ok(assigned) = self.consumer.assignment() {
            let _ = self.consumer.pause(&assigned);
        }
    }

    /// Leaves the group. After a shutdown drain it first commits what settled; a close
    /// without one (a kill, a disconnect) commits nothing more, as a crash would, and the
    /// next owner reads again from the last commit. Held retry copies are never settled
    /// here, so they are read again too.
    fn closer(&self) -> Closer {
        let consumer = Arc::downgrade(&self.consumer);
        let shared = self.shared.clone();
        let closed = self.closed.clone();
        let draining = self.draining.clone();
        let abandoned = self.abandoned.clone();
        Closer::new(move || {
            let (consumer, shared, closed) = (consumer.clone(), shared.clone(), closed.clone());
            let graceful = draining.load(atomic::Ordering::SeqCst);
            if !graceful {
                abandoned.store(true, atomic::Ordering::SeqCst);
            }
            async move {
                shared.closed.store(true, atomic::Ordering::SeqCst);
                closed.send_replace(true);
                let Some(consumer) = consumer.upgrade() else {
                    return;
                };
                if graceful {
                    commit_settled(consumer.as_ref(), &shared.log, CommitMode::Sync);
                }
                consumer.unsubscribe();
            }
            .boxed()
        })
    }
}

impl Drop for KafkaSession {
    /// A session dropped without a shutdown drain (its task was aborted, as a crash would
    /// end it) commits nothing more: the consumer's close revokes its partitions, and the
    /// revocation must not commit what a crashed member never would have.
    fn drop(&mut self) {
        if !self.draining.load(atomic::Ordering::SeqCst) {
            self.abandoned.store(true, atomic::Ordering::SeqCst);
            self.shared.closed.store(true, atomic::Ordering::SeqCst);
        }
        // Records still waiting here never reached a handler: the next owner reads them.
        for waiting in self.lanes.remove_held(|_| true) {
            waiting.forget();
        }
        for Reverse(held) in self.held.drain() {
            held.delivery.forget();
        }
        self.again_rx.close();
        while let Ok(again) = self.again_rx.try_recv() {
            again.delivery.forget();
        }
    }
}
