//! The idempotent consumer: a reconnecting session loop feeding deliveries to the engine.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use idemq_core::adapter::{DeadLetterReason, RetryPolicy};
use idemq_core::Engine;
use lapin::options::{
    BasicCancelOptions, BasicConsumeOptions, BasicQosOptions, ConfirmSelectOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tracing::{debug, info, warn};

use crate::connect::connect;
use crate::delivery::{AmqpDelivery, Settler};
use crate::error::AmqpError;
use crate::handler::Handler;
use crate::stats::Stats;
use crate::topology::{short, Topology};

/// Consumes a work queue through an idempotency [`Engine`].
///
/// Each delivery runs through [`idemq_core::adapter::process`]: acked only once its record
/// is consumed (or it is a known duplicate); a key in progress elsewhere goes to the delay
/// queue; a failed handler to its retry tier; poison and exhausted messages to the DLQ.
/// When the connection drops, the consumer reconnects with exponential backoff and
/// resumes; the broker redelivers what was unacked and the engine keeps each effect single.
/// Before reconnecting (and on shutdown) it waits for the handlers still running, up to the
/// [drain timeout](Consumer::drain_timeout), and aborts those that outlast it.
///
/// ```no_run
/// # use idemq_core::{Engine, EngineConfig, KeyStrategy, Scope, store::MemoryStore};
/// # use idemq_core::adapter::RetryPolicy;
/// # use idemq_rabbitmq::{AmqpDelivery, Consumer, Topology};
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let topology = Topology::new("orders", RetryPolicy::default())?;
/// let engine = Engine::new(
///     MemoryStore::new(),
///     EngineConfig::new(Scope::new("stock/orders")?),
///     KeyStrategy::MessageId,
/// );
/// let consumer = Consumer::new("amqp://127.0.0.1:5672/%2f", topology, engine)
///     .prefetch(32)
///     .concurrency(8)
///     .spawn(|d: &AmqpDelivery| {
///         let body = d.data().to_vec();
///         async move { Ok::<_, std::io::Error>(body.len().to_string()) }
///     });
/// consumer.wait_for_session(1).await;
/// consumer.shutdown().await?;
/// # Ok(()) }
/// ```
pub struct Consumer {
    uri: String,
    topology: Arc<Topology>,
    engine: Engine<AmqpDelivery>,
    prefetch: u16,
    concurrency: usize,
    reconnect_min: Duration,
    reconnect_max: Duration,
    drain_timeout: Duration,
    declare: bool,
    name: String,
}

impl Consumer {
    /// A consumer of `topology`'s work queue on the broker at `uri`
    /// (`amqp://user:pass@host:port/vhost`).
    pub fn new(uri: impl Into<String>, topology: Topology, engine: Engine<AmqpDelivery>) -> Self {
        let name = format!(
            "idemq-{}-{}",
            topology.queue(),
            uuid::Uuid::now_v7().simple()
        );
        Self {
            uri: uri.into(),
            topology: Arc::new(topology),
            engine,
            prefetch: 32,
            concurrency: 8,
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(10),
            // Long enough for an ordinary handler to finish its write after the connection
            // drops (so its redelivered copy is a cheap duplicate), short enough that a stuck
            // one keeps the consumer off the broker for seconds, not forever.
            drain_timeout: Duration::from_secs(30),
            declare: true,
            name,
        }
    }

    /// How many unacked deliveries the broker sends ahead (`basic.qos`, default 32).
    pub fn prefetch(mut self, n: u16) -> Self {
        self.prefetch = n.max(1);
        self
    }

    /// How many handlers run at once (default 8).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// The backoff between reconnection attempts: from `min`, doubling, up to `max`
    /// (default 100 ms to 10 s). It starts over after each successful connection.
    pub fn reconnect_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.reconnect_min = min;
        self.reconnect_max = max.max(min);
        self
    }

    /// How long to wait, once a session ends (connection lost or [`ConsumerHandle::shutdown`]),
    /// for its handlers still running to finish (default 30 s). Those still running after it
    /// are aborted and counted in [`Stats::abandoned`]; their messages are redelivered, and
    /// the engine does not run them again until the abandoned claims' leases run out.
    pub fn drain_timeout(mut self, grace: Duration) -> Self {
        self.drain_timeout = grace;
        self
    }

    /// Whether each session declares the topology first (default true).
    pub fn declare_topology(mut self, on: bool) -> Self {
        self.declare = on;
        self
    }

    /// The connection name shown by RabbitMQ (`rabbitmqctl list_connections
    /// client_properties`), also the consumer tag.
    pub fn connection_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Starts consuming on the current tokio runtime.
    pub fn spawn<H: Handler>(self, handler: H) -> ConsumerHandle {
        let (stop_tx, stop_rx) = watch::channel(false);
        let (sessions_tx, sessions_rx) = watch::channel(0);
        let shared = Arc::new(Shared {
            stats: Arc::new(Stats::default()),
            conn: Mutex::new(None),
            sessions: sessions_tx,
        });
        let name = self.name.clone();
        let task = tokio::spawn(self.run(Arc::new(handler), shared.clone(), stop_rx));
        ConsumerHandle {
            shared,
            stop: stop_tx,
            sessions: sessions_rx,
            task,
            name,
        }
    }

    async fn run<H: Handler>(
        self,
        handler: Arc<H>,
        shared: Arc<Shared>,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(), AmqpError> {
        let mut tasks = JoinSet::new();
        let mut backoff = self.reconnect_min;
        loop {
            let opened = shared.stats.sessions.get();
            let ended = self.session(&handler, &shared, &mut stop, &mut tasks).await;
            // Let the session's handlers settle (or fail to, on a dead channel) before its
            // connection goes, so their deliveries are not held twice; but only for so long,
            // or one hung handler would keep the consumer from ever reconnecting.
            let abandoned = drain(&mut tasks, self.drain_timeout).await;
            if abandoned > 0 {
                // Safe to walk away from: an aborted handler's claim stays CONSUMING (its
                // heartbeat stopped with it) until the lease runs out, so a redelivered copy
                // meanwhile is "in progress" and goes to the delay queue, to be taken over
                // with a new fencing token after the lease, never run alongside it (a claim
                // made inside a business transaction is rolled back with it instead). Its own
                // delivery was never acked, so the broker requeues it when this connection
                // closes (or already did, if the connection died).
                shared.stats.abandoned.add(abandoned as u64);
                warn!(
                    abandoned,
                    drain_timeout = ?self.drain_timeout,
                    queue = self.topology.queue(),
                    "handlers still running after the drain timeout were aborted"
                );
            }
            shared.close("session ended").await;
            match ended {
                Ok(()) => return Ok(()),
                Err(e) if *stop.borrow() => {
                    debug!(error = %e, "consumer stopped");
                    return Ok(());
                }
                Err(e) => {
                    if shared.stats.sessions.get() > opened {
                        backoff = self.reconnect_min;
                    }
                    warn!(error = %e, retry_in = ?backoff, queue = self.topology.queue(), "consumer session ended; reconnecting");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stopped(&mut stop) => return Ok(()),
                    }
                    backoff = (backoff * 2).min(self.reconnect_max);
                }
            }
        }
    }

    /// One connection's life: set up, then hand out deliveries until it dies or we stop.
    async fn session<H: Handler>(
        &self,
        handler: &Arc<H>,
        shared: &Arc<Shared>,
        stop: &mut watch::Receiver<bool>,
        tasks: &mut JoinSet<()>,
    ) -> Result<(), AmqpError> {
        let (conn, channel, mut deliveries) = open(
            &self.uri,
            &self.name,
            &self.topology,
            self.prefetch,
            self.declare,
        )
        .await?;
        *shared.conn.lock().unwrap_or_else(|e| e.into_inner()) = Some(conn.clone());
        let tag = short(&self.name)?;
        shared.stats.sessions.inc();
        shared.sessions.send_replace(shared.stats.sessions.get());
        info!(queue = self.topology.queue(), "consumer connected");

        let settler = Arc::new(Settler {
            channel: channel.clone(),
            topology: self.topology.clone(),
            stats: shared.stats.clone(),
        });
        let policy = Arc::new(self.topology.policy().clone());
        // Deliveries the broker sent while every handler slot was busy. The stream is read
        // all the same, so a dead connection is noticed even when every handler hangs; the
        // prefetch bounds how many wait here.
        let mut waiting = VecDeque::new();
        loop {
            while tasks.len() < self.concurrency {
                let Some(delivery) = waiting.pop_front() else {
                    break;
                };
                tasks.spawn(handle(
                    self.engine.clone(),
                    handler.clone(),
                    policy.clone(),
                    AmqpDelivery::new(delivery, settler.clone()),
                    shared.stats.clone(),
                ));
            }
            tokio::select! {
                _ = stopped(stop) => {
                    // Waiting deliveries were never acked: the broker requeues them.
                    let _ = channel.basic_cancel(tag, BasicCancelOptions::default()).await;
                    return Ok(());
                }
                Some(joined) = tasks.join_next(), if !tasks.is_empty() => check(joined)?,
                next = deliveries.next() => match next {
                    Some(Ok(d)) => waiting.push_back(d),
                    Some(Err(e)) => return Err(e.into()),
                    None => return Err(AmqpError::Cancelled),
                },
            }
        }
    }
}

/// Connects, enables confirms, sets the prefetch, declares the topology (when asked) and
/// starts consuming the work queue under the consumer tag `name`.
pub(crate) async fn open(
    uri: &str,
    name: &str,
    topology: &Topology,
    prefetch: u16,
    declare: bool,
) -> Result<(Arc<Connection>, Channel, lapin::Consumer), AmqpError> {
    let conn = Arc::new(connect(uri, name).await?);
    let channel = conn.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await?;
    if declare {
        topology.declare(&channel).await?;
    }
    let deliveries = channel
        .basic_consume(
            short(topology.queue())?,
            short(name)?,
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok((conn, channel, deliveries))
}

/// A handler panic leaves its delivery unacked on this channel: end the session so the
/// broker gives it back.
fn check(joined: Result<(), tokio::task::JoinError>) -> Result<(), AmqpError> {
    match joined {
        Err(e) if e.is_panic() => Err(AmqpError::HandlerPanicked),
        _ => Ok(()),
    }
}

/// Resolves once a stop is asked for (or the handle is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Waits up to `grace` for the running handlers, then aborts the rest; returns how many
/// were aborted.
async fn drain(tasks: &mut JoinSet<()>, grace: Duration) -> usize {
    let settled = tokio::time::timeout(grace, async {
        while let Some(joined) = tasks.join_next().await {
            if check(joined).is_err() {
                warn!("a handler panicked");
            }
        }
    })
    .await;
    if settled.is_ok() {
        return 0;
    }
    let abandoned = tasks.len();
    tasks.shutdown().await;
    abandoned
}

async fn handle<H: Handler>(
    engine: Engine<AmqpDelivery>,
    handler: Arc<H>,
    policy: Arc<RetryPolicy>,
    delivery: AmqpDelivery,
    stats: Arc<Stats>,
) {
    let settled = match handler.decode(&delivery) {
        Err(e) => {
            warn!(error = %e, "undecodable message dead-lettered");
            delivery
                .dead_letter(&DeadLetterReason::Undecodable(e))
                .await
        }
        Ok(input) => handler
            .process(&engine, &policy, input, delivery)
            .await
            .map(drop),
    };
    if let Err(e) = settled {
        // Unsettled means unacked: the broker redelivers it, and the engine decides again.
        stats.unsettled.inc();
        debug!(error = %e, "delivery not settled");
    }
}

use idemq_core::adapter::Delivery as _;

struct Shared {
    stats: Arc<Stats>,
    conn: Mutex<Option<Arc<Connection>>>,
    sessions: watch::Sender<u64>,
}

impl Shared {
    fn current(&self) -> Option<Arc<Connection>> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    async fn close(&self, why: &str) {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(conn) = conn {
            let _ = conn.close(200, why.into()).await;
        }
    }
}

/// Controls a running [`Consumer`].
pub struct ConsumerHandle {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    sessions: watch::Receiver<u64>,
    task: JoinHandle<Result<(), AmqpError>>,
    name: String,
}

impl ConsumerHandle {
    /// What the consumer has done so far.
    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }

    /// The connection name (and consumer tag) RabbitMQ shows for this consumer.
    pub fn connection_name(&self) -> &str {
        &self.name
    }

    /// Waits until the consumer has opened `n` sessions (1 is the first connection; each
    /// reconnection adds one) and is consuming.
    pub async fn wait_for_session(&self, n: u64) {
        let mut rx = self.sessions.clone();
        let _ = rx.wait_for(|s| *s >= n).await;
    }

    /// Closes the current connection, as a network fault would; the consumer reconnects.
    pub async fn disconnect(&self) {
        if let Some(conn) = self.shared.current() {
            let _ = conn
                .close(320, "disconnected by the application".into())
                .await;
        }
    }

    /// Stops taking deliveries, lets running handlers settle (for up to the
    /// [drain timeout](Consumer::drain_timeout), then aborts them), and closes the connection.
    pub async fn shutdown(self) -> Result<(), AmqpError> {
        self.stop.send_replace(true);
        match self.task.await {
            Ok(r) => r,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Ok(()),
        }
    }

    /// Stops at once, like a crashed process: running handlers are dropped mid-way and the
    /// connection closed, so the broker redelivers every unacked message.
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
        self.shared.close("killed").await;
    }
}
