//! The transaction log of transactional messages: one row per local transaction, written in
//! that transaction, so a broker's check-back can be answered from what really committed.
//!
//! A producer writes [`TxLog::record`] first in its local transaction, then the business
//! change, then commits: the row exists exactly when the business change committed. A
//! check-back that finds no row may settle the id as rolled back with [`TxLog::resolve`];
//! the primary key makes that race safe whatever the timing: a local transaction still
//! holding its uncommitted row makes `resolve` wait for it (and then answer committed, or
//! settle the id as rolled back), and one that comes later finds the rolled-back row and
//! is refused ([`TxLogError::Duplicate`]), so it cannot commit after the message was
//! dropped.

use std::future::Future;
use std::time::Duration;

use idemq_core::time::{duration_ms, now_ms, UnixMillis};
use idemq_core::StoreError;
use sqlx::{Database, Transaction};

use crate::Sweeper;

/// The table the transaction logs use unless told otherwise.
pub const DEFAULT_TX_LOG_TABLE: &str = "idemq_tx_log";

/// The longest transaction id a log keeps.
pub const MAX_TX_ID: usize = 128;

/// The longest business key or topic a log keeps, in bytes.
pub const MAX_TX_FIELD: usize = 255;

/// How a local transaction ended, as its row says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TxState {
    /// The local transaction committed: the message is to be delivered.
    Committed,
    /// The local transaction failed, or a check-back settled it as never committed: the
    /// message is to be dropped.
    RolledBack,
}

impl TxState {
    /// The value of the `state` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Committed => "COMMITTED",
            Self::RolledBack => "ROLLED_BACK",
        }
    }

    /// Reads a `state` column back.
    pub fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "COMMITTED" => Ok(Self::Committed),
            "ROLLED_BACK" => Ok(Self::RolledBack),
            other => Err(StoreError::Corrupt(format!(
                "unknown transaction state {other:?}"
            ))),
        }
    }
}

/// One local transaction of a transactional message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxEntry {
    /// The message's transaction id (RocketMQ: its unique id, `UNIQ_KEY`).
    pub tx_id: String,
    /// The message's business key, if it has one (an order id).
    pub business_key: Option<String>,
    /// The topic the message goes to.
    pub topic: String,
}

impl TxEntry {
    /// An entry for `tx_id` on `topic`. An empty id, one over [`MAX_TX_ID`] bytes, a
    /// business key or topic over [`MAX_TX_FIELD`] bytes, or any of them holding a NUL
    /// (which PostgreSQL cannot store) is a [`StoreError::Config`].
    pub fn new(
        tx_id: impl Into<String>,
        business_key: Option<String>,
        topic: impl Into<String>,
    ) -> Result<Self, StoreError> {
        let tx_id = tx_id.into();
        let topic = topic.into();
        if tx_id.is_empty() || tx_id.len() > MAX_TX_ID || tx_id.contains('\0') {
            return Err(StoreError::Config(format!(
                "a transaction id has 1 to {MAX_TX_ID} bytes and no NUL (this one: {} bytes)",
                tx_id.len()
            )));
        }
        let fields = [
            ("business key", business_key.as_deref()),
            ("topic", Some(&*topic)),
        ];
        for (what, value) in fields {
            if let Some(v) = value.filter(|v| v.len() > MAX_TX_FIELD || v.contains('\0')) {
                return Err(StoreError::Config(format!(
                    "a transaction's {what} has at most {MAX_TX_FIELD} bytes and no NUL \
                     (this one: {} bytes)",
                    v.len()
                )));
            }
        }
        Ok(Self {
            tx_id,
            business_key,
            topic,
        })
    }
}

/// Why a row could not be written.
#[derive(Debug, thiserror::Error)]
pub enum TxLogError {
    /// The id already has a row: a second send of one transaction, or a check-back that
    /// settled it as rolled back before this transaction got to write it.
    #[error("transaction {0:?} is already in the log")]
    Duplicate(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl TxLogError {
    /// Maps the error of inserting `tx_id`'s row: a unique violation is
    /// [`TxLogError::Duplicate`], anything else the store's error.
    pub fn from_insert(e: sqlx::Error, tx_id: &str) -> Self {
        if e.as_database_error()
            .is_some_and(|d| d.is_unique_violation())
        {
            Self::Duplicate(tx_id.to_owned())
        } else {
            Self::Store(crate::store_error(e))
        }
    }
}

/// A transaction log in one SQL table. Implemented by `idemq-mysql`, `idemq-postgres` and
/// `idemq-sqlite`; every implementation passes `tx_log_conformance!`.
pub trait TxLog: Clone + Send + Sync + 'static {
    /// The driver.
    type Db: Database;

    /// Begins a local transaction on the log's pool (SQLite: `BEGIN IMMEDIATE`).
    fn begin(
        &self,
    ) -> impl Future<Output = Result<Transaction<'static, Self::Db>, StoreError>> + Send;

    /// Writes `entry` as committed in `conn`'s open transaction, so the row commits or rolls
    /// back with it. An id that has a row already is refused with
    /// [`TxLogError::Duplicate`].
    fn record(
        &self,
        conn: &mut <Self::Db as Database>::Connection,
        entry: &TxEntry,
    ) -> impl Future<Output = Result<(), TxLogError>> + Send;

    /// The state of `tx_id`, or `None` when it has no committed row.
    fn state(
        &self,
        tx_id: &str,
    ) -> impl Future<Output = Result<Option<TxState>, StoreError>> + Send;

    /// Settles `entry` as rolled back unless it has a row already, in a transaction of its
    /// own, and returns the state the log then holds. A local transaction holding the id's
    /// uncommitted row makes it wait until that one ends.
    fn resolve(&self, entry: &TxEntry) -> impl Future<Output = Result<TxState, StoreError>> + Send;

    /// Deletes at most `batch` rows written before `before`; returns how many.
    fn purge(
        &self,
        before: UnixMillis,
        batch: u64,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Spawns a [`Sweeper`] deleting rows older than `retention`, `batch` rows a statement,
    /// every `interval`. Keep `retention` far longer than the broker checks back (RocketMQ:
    /// `transactionCheckMax` × `transactionCheckInterval`, 7.5 minutes by default).
    fn spawn_purger(&self, retention: Duration, interval: Duration, batch: u64) -> Sweeper {
        let retention = duration_ms(retention);
        Sweeper::spawn_on(self.clone(), interval, batch, move |log, n| async move {
            log.purge(now_ms().saturating_sub(retention), n).await
        })
    }
}
