//! The transactional producer: a half message, the local transaction in SQL with its log
//! row, then commit or rollback of the message.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use idemq_core::StoreError;
use idemq_sql::{TxEntry, TxLog, TxLogError};
use rocketmq_client_rust::{LocalTransactionState, TransactionMQProducer};
use rocketmq_model::result::{SendResult, SendStatus};
use sqlx::Database;
use tokio::sync::{oneshot, RwLock};

use super::check::{CheckCounts, Counters};
use super::listener::{Bridge, Handoff, Reply};
use crate::client::Client;
use crate::error::RmqError;
use crate::names::check_name;
use crate::producer::Outgoing;

/// Called with each local transaction's entry after it committed, before the broker is
/// told: metrics, logs, or a fault harness that dies there.
pub type AfterCommit = Arc<dyn Fn(&TxEntry) + Send + Sync>;

/// How a [`TxProducer`] answers and waits.
#[derive(Clone)]
pub struct TxConfig {
    /// How long a message with no row in the log is in doubt (its local transaction may
    /// still be running) before a check-back settles it as rolled back. Default 60 s; keep
    /// it well under the broker's `transactionCheckMax` × `transactionCheckInterval`.
    pub grace: Duration,
    /// The longest a check-back waits for the log before answering unknown. Default 5 s.
    pub check_timeout: Duration,
    /// The longest the client waits for a local transaction before telling the broker
    /// unknown (the transaction goes on; a check-back finds its row). Default 30 s.
    pub local_timeout: Duration,
    /// Called after each local commit, before the broker hears of it.
    pub after_commit: Option<AfterCommit>,
}

impl Default for TxConfig {
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(60),
            check_timeout: Duration::from_secs(5),
            local_timeout: Duration::from_secs(30),
            after_commit: None,
        }
    }
}

impl std::fmt::Debug for TxConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TxConfig")
            .field("grace", &self.grace)
            .field("check_timeout", &self.check_timeout)
            .field("local_timeout", &self.local_timeout)
            .field("after_commit", &self.after_commit.is_some())
            .finish()
    }
}

/// A local transaction that committed, and what the broker was told.
#[derive(Debug)]
pub struct TxSent<T> {
    /// What the local transaction returned.
    pub value: T,
    /// The transaction id: the message's unique id, the key of its log row.
    pub tx_id: String,
    /// `CommitMessage` when the broker was told to deliver; `Unknown` when the local
    /// transaction outlasted [`TxConfig::local_timeout`] and delivery waits for the
    /// check-back, which finds the row.
    pub reported: LocalTransactionState,
    /// The broker's answer to the half message.
    pub half: SendResult,
}

/// Why a transactional send did not commit.
#[derive(Debug, thiserror::Error)]
pub enum TxError<E> {
    /// The half message was not stored: nothing ran.
    #[error("half message not sent: {0}")]
    Send(#[from] RmqError),
    /// The local transaction failed and rolled back; so did the message.
    #[error("local transaction failed: {0}")]
    Local(E),
    /// The transaction id already has a log row (a second send of one transaction, or a
    /// check-back settled it as rolled back first): rolled back, nothing written.
    #[error("transaction {0:?} is already in the log")]
    Duplicate(String),
    /// The database failed before the commit: rolled back, and so is the message.
    #[error("local transaction not committed: {0}")]
    Store(StoreError),
    /// The commit itself failed: whether it committed is unknown. The broker was told
    /// unknown and its check-back answers from the log.
    #[error("local commit in doubt: {0}")]
    InDoubt(StoreError),
}

/// What the local transaction came to, and what the broker is told.
enum Local<T, E> {
    /// The half message was not stored, so the go-ahead never came.
    NotRun,
    Done(Result<T, TxError<E>>),
}

/// A RocketMQ transactional producer whose local transactions run in SQL beside a
/// [transaction log](TxLog), and whose check-backs are answered from that log.
///
/// [`send_in_transaction`](Self::send_in_transaction) sends the half message; once the
/// broker stored it, the local transaction begins, writes the log row first, runs the
/// caller's writes on the same transaction and commits; the message is then committed, or
/// rolled back when anything failed. When the outcome does not reach the broker (the
/// process died, the connection dropped), the broker checks back with any producer of the
/// group, which answers from the log: committed when the row exists, rolled back when it
/// says so, unknown while the message is younger than the grace period, and after that the
/// log settles the id as rolled back (fencing a local transaction that would commit
/// later).
///
/// ```no_run
/// # async fn demo(pool: sqlx::MySqlPool) -> Result<(), Box<dyn std::error::Error>> {
/// use idemq_mysql::MySqlTxLog;
/// use idemq_rocketmq::transaction::{TxConfig, TxProducer};
/// use idemq_rocketmq::{Client, Outgoing};
///
/// let log = MySqlTxLog::new(pool, "idemq_tx_log")?;
/// log.migrate().await?;
/// let client = Client::new("127.0.0.1:9876")?;
/// let producer =
///     TxProducer::start(&client, "orders-tx", &["orders"], log, TxConfig::default()).await?;
/// let msg = Outgoing::new("orders", r#"{"order":"o-1"}"#).key("o-1");
/// producer
///     .send_in_transaction(msg, |tx| {
///         Box::pin(async move {
///             sqlx::query("INSERT INTO orders (id) VALUES (?)")
///                 .bind("o-1")
///                 .execute(&mut *tx)
///                 .await
///         })
///     })
///     .await?;
/// # Ok(()) }
/// ```
pub struct TxProducer<L: TxLog> {
    inner: RwLock<TransactionMQProducer>,
    log: L,
    group: String,
    counts: Arc<Counters>,
    after_commit: Option<AfterCommit>,
}

impl<L: TxLog> TxProducer<L> {
    /// Starts a transactional producer of group `group` over `log`, for the group's
    /// `topics`. Check-backs run on the current Tokio runtime.
    ///
    /// A broker sends check-backs only to producers that beat to it, and a producer beats
    /// only to brokers it knows from a topic's route: the producer looks up `topics` at
    /// start, so a restarted producer answers for its group's half messages before it sends
    /// anything.
    pub async fn start(
        client: &Client,
        group: &str,
        topics: &[&str],
        log: L,
        config: TxConfig,
    ) -> Result<Self, RmqError> {
        check_name("producer group", group)?;
        for topic in topics {
            check_name("topic", topic)?;
        }
        let counts = Arc::new(Counters::default());
        let bridge = Bridge {
            log: log.clone(),
            runtime: tokio::runtime::Handle::current(),
            grace: config.grace,
            check_timeout: config.check_timeout,
            local_timeout: config.local_timeout,
            counts: counts.clone(),
        };
        let instance = format!("{group}-{}", uuid::Uuid::now_v7().simple());
        let mut producer = TransactionMQProducer::builder(client.runtime())
            .client_config(client.config(&instance))
            .producer_group(group.to_string())
            .topics(topics.to_vec())
            .send_msg_timeout(5_000)
            .transaction_listener(bridge)
            .build();
        producer.start().await?;
        Ok(Self {
            inner: RwLock::new(producer),
            log,
            group: group.to_string(),
            counts,
            after_commit: config.after_commit,
        })
    }

    /// The producer group.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The transaction log.
    pub fn log(&self) -> &L {
        &self.log
    }

    /// What this producer's check-backs answered so far.
    pub fn checks(&self) -> CheckCounts {
        self.counts.snapshot()
    }

    /// Waits until this producer's check-back counts satisfy `f` (say, one answered
    /// committed), and returns them then.
    pub async fn wait_for_checks(&self, f: impl Fn(&CheckCounts) -> bool) -> CheckCounts {
        self.counts.wait_until(f).await
    }

    /// Sends `msg` as a half message and, once the broker stored it, runs `local_tx` in a
    /// transaction of the log's database after writing the log row; commits both, then
    /// commits the message. Any failure rolls the transaction and the message back.
    ///
    /// The message's unique id (`msg.id`, or a fresh one) is the transaction id. Sending
    /// one id twice is one transaction: the second is refused with
    /// [`TxError::Duplicate`]. Transactional messages cannot be delayed.
    pub async fn send_in_transaction<F, T, E>(
        &self,
        mut msg: Outgoing,
        local_tx: F,
    ) -> Result<TxSent<T>, TxError<E>>
    where
        F: for<'c> FnOnce(&'c mut <L::Db as Database>::Connection) -> BoxFuture<'c, Result<T, E>>
            + Send,
        T: Send,
        E: Send,
    {
        if msg.delay.is_some() {
            return Err(
                RmqError::Message("a transactional message cannot be delayed".into()).into(),
            );
        }
        let tx_id = msg
            .id
            .get_or_insert_with(|| uuid::Uuid::now_v7().simple().to_string())
            .clone();
        let entry = TxEntry::new(tx_id, msg.key.clone(), msg.topic.clone())
            .map_err(|e| RmqError::Message(e.to_string()))?;
        let topic = msg.topic.clone();
        let message = msg.into_message()?;
        let (handoff, go) = Handoff::new();
        let send = async {
            let producer = self.inner.read().await;
            producer
                .send_message_in_transaction(message, Some(handoff))
                .await
        };
        let (sent, local) = tokio::join!(send, self.run_local(go, &entry, local_tx));
        match (local, sent) {
            (Local::Done(Ok(value)), sent) => Ok(TxSent {
                value,
                tx_id: entry.tx_id,
                reported: sent
                    .as_ref()
                    .ok()
                    .and_then(|r| r.local_transaction_state)
                    .unwrap_or(LocalTransactionState::Unknown),
                half: sent.ok().and_then(|r| r.send_result).unwrap_or_default(),
            }),
            (Local::Done(Err(e)), _) => Err(e),
            (Local::NotRun, Err(e)) => Err(RmqError::from(e).into()),
            (Local::NotRun, Ok(r)) => Err(RmqError::NotStored {
                topic,
                status: r
                    .send_result
                    .map_or_else(|| "no result".into(), |s| status(&s)),
            }
            .into()),
        }
    }

    /// Waits for the go-ahead (the half message is stored), runs the local transaction and
    /// reports its outcome to the blocked listener call.
    async fn run_local<F, T, E>(
        &self,
        go: oneshot::Receiver<Reply>,
        entry: &TxEntry,
        local_tx: F,
    ) -> Local<T, E>
    where
        F: for<'c> FnOnce(&'c mut <L::Db as Database>::Connection) -> BoxFuture<'c, Result<T, E>>
            + Send,
    {
        let Ok(reply) = go.await else {
            return Local::NotRun;
        };
        let result = self.commit_local(entry, local_tx).await;
        let state = match &result {
            Ok(_) => LocalTransactionState::CommitMessage,
            Err(TxError::InDoubt(_)) => LocalTransactionState::Unknown,
            Err(_) => LocalTransactionState::RollbackMessage,
        };
        // The channel holds one outcome, so this never blocks; a listener that stopped
        // waiting has answered unknown already.
        let _ = reply.send(state);
        Local::Done(result)
    }

    async fn commit_local<F, T, E>(&self, entry: &TxEntry, local_tx: F) -> Result<T, TxError<E>>
    where
        F: for<'c> FnOnce(&'c mut <L::Db as Database>::Connection) -> BoxFuture<'c, Result<T, E>>
            + Send,
    {
        let mut tx = self.log.begin().await.map_err(TxError::Store)?;
        // The row first: from here on a check-back's `resolve` waits for this transaction.
        match self.log.record(&mut tx, entry).await {
            Ok(()) => {}
            Err(TxLogError::Duplicate(id)) => return Err(TxError::Duplicate(id)),
            Err(TxLogError::Store(e)) => return Err(TxError::Store(e)),
        }
        let value = match local_tx(&mut tx).await {
            Ok(value) => value,
            Err(e) => {
                drop(tx);
                self.settle_rolled_back(entry).await;
                return Err(TxError::Local(e));
            }
        };
        tx.commit()
            .await
            .map_err(|e| TxError::InDoubt(idemq_sql::store_error(e)))?;
        if let Some(hook) = &self.after_commit {
            hook(entry);
        }
        Ok(value)
    }

    /// Writes the rolled-back row of a failed local transaction, so a check-back (should
    /// the rollback not reach the broker) answers at once instead of after the grace
    /// period. Best effort: without it the check-back still settles the id.
    async fn settle_rolled_back(&self, entry: &TxEntry) {
        if let Err(e) = self.log.resolve(entry).await {
            tracing::warn!(tx_id = %entry.tx_id, error = %e, "could not log a rolled-back transaction");
        }
    }

    /// Stops the producer; it answers no more check-backs.
    pub async fn shutdown(&self) {
        self.inner.write().await.shutdown().await;
    }
}

fn status(r: &SendResult) -> String {
    match r.send_status {
        SendStatus::SendOk => "SEND_OK".into(),
        other => format!("{other:?}"),
    }
}
