//! The consumer: a reconnecting session loop feeding deliveries to a handler.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use idemq_core::adapter::{Delivery, RetryPolicy};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::drain::{drain, joined};
use crate::handler::Handler;
use crate::source::{Closer, Session, Source};
use crate::stats::Stats;

/// Consumes a [`Source`] through a [`Handler`], with everything a consumer does besides
/// talking to its broker.
///
/// - At most [`concurrency`](Consumer::concurrency) handler tasks run at once. Deliveries
///   that arrive while every slot is busy wait in a queue, and the session is read all the
///   same, so a dead connection is noticed even when every handler hangs.
/// - When several deliveries wait as a slot frees, one task takes up to
///   [`batch`](Consumer::batch) of them: they are claimed in one `claim_batch` and completed
///   in one `complete_batch` ([`Handler::handle_batch`]).
/// - When a session dies, the consumer waits for its handlers up to the
///   [drain timeout](Consumer::drain_timeout), aborts those that outlast it, and opens a new
///   session with exponential backoff. The broker redelivers what was not settled, and the
///   engine keeps each effect single.
/// - A handler that panics is contained: its task ends, its delivery is dropped unsettled
///   (the broker gives it back) and [`Stats::panicked`] counts it.
pub struct Consumer<S> {
    source: S,
    policy: Arc<RetryPolicy>,
    concurrency: usize,
    batch: usize,
    reconnect_min: Duration,
    reconnect_max: Duration,
    drain_timeout: Duration,
    idle_exit: Option<Duration>,
    name: String,
}

impl<S: Source> Consumer<S> {
    /// A consumer of `source` that retries failed handlers as `policy` says.
    pub fn new(source: S, policy: RetryPolicy) -> Self {
        Self {
            source,
            policy: Arc::new(policy),
            concurrency: 8,
            batch: 32,
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(10),
            // Long enough for an ordinary handler to finish its write after the connection
            // drops (so its redelivered copy is a cheap duplicate), short enough that a stuck
            // one keeps the consumer off the broker for seconds, not forever.
            drain_timeout: Duration::from_secs(30),
            idle_exit: None,
            name: "idemq-consumer".into(),
        }
    }

    /// How many handler tasks run at once (default 8).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// The most deliveries one task claims together (default 32; 1 turns batching off), for
    /// handlers that claim in batches ([`Handler::claims_in_batches`]). A batch settles when
    /// its last handler finishes; a handler that panics takes its batch-mates' settling with
    /// it (their records are completed first, so their redeliveries are duplicates).
    pub fn batch(mut self, n: usize) -> Self {
        self.batch = n.max(1);
        self
    }

    /// The backoff between reconnection attempts: from `min`, doubling, up to `max`
    /// (default 100 ms to 10 s). It starts over after each session that opened.
    pub fn reconnect_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.reconnect_min = min;
        self.reconnect_max = max.max(min);
        self
    }

    /// How long to wait, once a session ends (connection lost or
    /// [`ConsumerHandle::shutdown`]), for its handlers still running (default 30 s). Those
    /// still running after it are aborted and counted in [`Stats::abandoned`]; their messages
    /// are redelivered, and the engine does not run them again until the abandoned claims'
    /// leases run out.
    pub fn drain_timeout(mut self, grace: Duration) -> Self {
        self.drain_timeout = grace;
        self
    }

    /// Stops the consumer once nothing was received and nothing ran for `idle`.
    pub fn idle_exit(mut self, idle: Option<Duration>) -> Self {
        self.idle_exit = idle;
        self
    }

    /// The name in this consumer's logs.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Starts consuming on the current tokio runtime.
    pub fn spawn<H: Handler<S::Delivery>>(self, handler: H) -> ConsumerHandle {
        let (stop_tx, stop_rx) = watch::channel(false);
        let (sessions_tx, sessions_rx) = watch::channel(0);
        let shared = Arc::new(Shared {
            stats: Arc::new(Stats::default()),
            closer: Mutex::new(None),
            sessions: sessions_tx,
        });
        let task = tokio::spawn(self.run(Arc::new(handler), shared.clone(), stop_rx));
        ConsumerHandle {
            shared,
            stop: stop_tx,
            sessions: sessions_rx,
            task,
        }
    }

    async fn run<H: Handler<S::Delivery>>(
        self,
        handler: Arc<H>,
        shared: Arc<Shared>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut tasks = JoinSet::new();
        let mut backoff = self.reconnect_min;
        loop {
            let opened = shared.stats.sessions.get();
            let ended = self.session(&handler, &shared, &mut stop, &mut tasks).await;
            // Let the session's handlers settle (or fail to, on a dead connection) before it
            // goes, so their deliveries are not held twice; but only for so long, or one hung
            // handler would keep the consumer from ever reconnecting.
            let abandoned = drain(&mut tasks, self.drain_timeout, &shared.stats).await;
            if abandoned > 0 {
                // Safe to walk away from: an aborted handler's claim stays CONSUMING (its
                // heartbeat stopped with it) until the lease runs out, so a redelivered copy
                // is "in progress" meanwhile and is taken over with a new fencing token
                // after it, never run alongside (a claim made in a business transaction is
                // rolled back with it instead). Its delivery was never settled, so the broker
                // gives it back.
                shared.stats.abandoned.add(abandoned as u64);
                shared.stats.changed();
                warn!(
                    abandoned,
                    drain_timeout = ?self.drain_timeout,
                    consumer = %self.name,
                    "handlers still running after the drain timeout were aborted"
                );
            }
            shared.close().await;
            match ended {
                Ended::Stopped | Ended::Finished => return,
                Ended::Failed(e) if *stop.borrow() => {
                    debug!(error = %e, "consumer stopped");
                    return;
                }
                Ended::Failed(e) => {
                    if shared.stats.sessions.get() > opened {
                        backoff = self.reconnect_min;
                    }
                    warn!(error = %e, retry_in = ?backoff, consumer = %self.name, "consumer session ended; reconnecting");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stopped(&mut stop) => return,
                    }
                    backoff = (backoff * 2).min(self.reconnect_max);
                }
            }
        }
    }

    /// One session's life: open, then hand out deliveries until it dies, the source is
    /// finished, the consumer is idle long enough, or a stop is asked for.
    async fn session<H: Handler<S::Delivery>>(
        &self,
        handler: &Arc<H>,
        shared: &Arc<Shared>,
        stop: &mut watch::Receiver<bool>,
        tasks: &mut JoinSet<()>,
    ) -> Ended<S::Error> {
        let mut session = tokio::select! {
            opened = self.source.open() => match opened {
                Ok(s) => s,
                Err(e) => return Ended::Failed(e),
            },
            _ = stopped(stop) => return Ended::Stopped,
        };
        shared.set_closer(Some(session.closer()));
        shared.stats.sessions.inc();
        shared.stats.changed();
        shared.sessions.send_replace(shared.stats.sessions.get());
        info!(consumer = %self.name, "consumer session opened");

        let mut waiting: VecDeque<S::Delivery> = VecDeque::new();
        let mut last_activity = Instant::now();
        let batch = if handler.claims_in_batches() {
            self.batch
        } else {
            1
        };
        loop {
            while tasks.len() < self.concurrency && !waiting.is_empty() {
                let n = waiting.len().min(batch);
                let batch: Vec<_> = waiting.drain(..n).collect();
                tasks.spawn(handle(
                    handler.clone(),
                    self.policy.clone(),
                    batch,
                    shared.stats.clone(),
                ));
            }
            let idle = self
                .idle_exit
                .filter(|_| tasks.is_empty() && waiting.is_empty());
            let event = tokio::select! {
                _ = stopped(stop) => Event::Stop,
                Some(j) = tasks.join_next(), if !tasks.is_empty() => Event::Joined(j),
                next = session.recv() => Event::Received(next),
                _ = tokio::time::sleep_until(last_activity + idle.unwrap_or_default()), if idle.is_some() => Event::Idle,
            };
            match event {
                Event::Stop => {
                    // Waiting deliveries were never settled: the broker gives them back.
                    session.cancel().await;
                    return Ended::Stopped;
                }
                Event::Joined(j) => {
                    joined(j, &shared.stats);
                    last_activity = Instant::now();
                }
                Event::Received(Ok(Some(batch))) => {
                    shared.stats.received.add(batch.len() as u64);
                    shared.stats.changed();
                    waiting.extend(batch);
                    last_activity = Instant::now();
                }
                Event::Received(Ok(None)) => return Ended::Finished,
                Event::Received(Err(e)) => return Ended::Failed(e),
                Event::Idle => {
                    info!(consumer = %self.name, idle = ?self.idle_exit, "consumer idle; stopping");
                    session.cancel().await;
                    return Ended::Finished;
                }
            }
        }
    }
}

/// What woke the session loop.
enum Event<D, E> {
    Stop,
    Joined(Result<(), tokio::task::JoinError>),
    Received(Result<Option<Vec<D>>, E>),
    Idle,
}

/// How a session ended.
enum Ended<E> {
    /// A stop was asked for.
    Stopped,
    /// The source has nothing more, or the consumer was idle long enough.
    Finished,
    /// The session died.
    Failed(E),
}

/// One handler task: a single delivery, or a batch.
async fn handle<D: Delivery + 'static, H: Handler<D>>(
    handler: Arc<H>,
    policy: Arc<RetryPolicy>,
    mut batch: Vec<D>,
    stats: Arc<Stats>,
) {
    let answers = if batch.len() == 1 {
        let d = batch.pop().expect("one delivery");
        vec![handler.handle(d, &policy).await]
    } else {
        stats.batches.inc();
        stats.largest_batch.max(batch.len() as u64);
        handler.handle_batch(batch, &policy).await
    };
    for answer in answers {
        match answer {
            Ok(disposition) => stats.count(&disposition),
            Err(e) => {
                // Unsettled means unacked: the broker redelivers it, and the engine decides
                // again.
                stats.unsettled.inc();
                debug!(error = %e, "delivery not settled");
            }
        }
    }
    stats.changed();
}

/// Resolves once a stop is asked for (or the handle is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

struct Shared {
    stats: Arc<Stats>,
    closer: Mutex<Option<Closer>>,
    sessions: watch::Sender<u64>,
}

impl Shared {
    fn set_closer(&self, closer: Option<Closer>) {
        *self.closer.lock().unwrap_or_else(|e| e.into_inner()) = closer;
    }

    fn current(&self) -> Option<Closer> {
        self.closer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    async fn close(&self) {
        let closer = self.closer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(closer) = closer {
            closer.close().await;
        }
    }
}

/// Controls a running [`Consumer`].
pub struct ConsumerHandle {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    sessions: watch::Receiver<u64>,
    task: JoinHandle<()>,
}

impl ConsumerHandle {
    /// What the consumer has done so far.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.shared.stats
    }

    /// Waits until the consumer has opened `n` sessions (1 is the first; each reconnection
    /// adds one).
    pub async fn wait_for_session(&self, n: u64) {
        let mut rx = self.sessions.clone();
        let _ = rx.wait_for(|s| *s >= n).await;
    }

    /// Closes the current session's connection, as a network fault would; the consumer
    /// drains and reconnects.
    pub async fn disconnect(&self) {
        if let Some(closer) = self.shared.current() {
            closer.close().await;
        }
    }

    /// Stops taking deliveries, lets running handlers settle (for up to the
    /// [drain timeout](Consumer::drain_timeout), then aborts them), and closes the session.
    pub async fn shutdown(self) {
        self.stop();
        self.join().await;
    }

    /// Asks the consumer to stop, as [`shutdown`](ConsumerHandle::shutdown) does, without
    /// waiting; [`join`](ConsumerHandle::join) then waits for it.
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// Waits for the consumer to stop on its own: its source is finished or it was idle for
    /// its [idle exit](Consumer::idle_exit).
    pub async fn join(self) {
        if let Err(e) = self.task.await {
            if e.is_panic() {
                std::panic::resume_unwind(e.into_panic());
            }
        }
    }

    /// Stops at once, like a crashed process: running handlers are dropped mid-way and the
    /// connection closed, so the broker redelivers every unsettled message.
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
        self.shared.close().await;
    }
}
