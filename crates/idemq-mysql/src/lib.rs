//! The MySQL and MariaDB store of idemq.
//!
//! ```no_run
//! use idemq_core::{Engine, EngineConfig, Envelope, KeyStrategy, Scope};
//! use idemq_mysql::MySqlStore;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let store = MySqlStore::connect("mysql://root@127.0.0.1:3306/test").await?;
//! let _sweeper = store.spawn_sweeper(std::time::Duration::from_secs(60), 1000);
//! let engine: Engine<Envelope> = Engine::new(
//!     store,
//!     EngineConfig::new(Scope::new("billing/payments")?),
//!     KeyStrategy::MessageId,
//! );
//! # Ok(()) }
//! ```
//!
//! # Atomicity
//!
//! - A claim first reads its keys in one statement: a consumed, leased or conflicting key
//!   is answered from that read. Missing keys are inserted with `INSERT IGNORE` (several in
//!   one multi-row statement, in key order, all or none), and of two concurrent inserts the
//!   primary key lets exactly one through. When a claim must write an existing row (a
//!   takeover, a released claim) it locks it with `SELECT ... FOR UPDATE` in a transaction,
//!   applies the rules of [`idemq_core::store::transition`] in Rust and writes the row back.
//! - `complete` and `release` are single conditional `UPDATE`s on the token. Deadlocks
//!   (which InnoDB reports for racing duplicate inserts) are retried.
//! - `complete_batch` is one transaction of few statements: it locks the rows with one
//!   `SELECT ... FOR UPDATE`, applies the rule in Rust (so a key met twice sees the first
//!   completion) and writes the changed rows back in one statement.
//!
//! Transactions should run at `READ COMMITTED`, which [`MySqlStore::connect`] sets for its
//! sessions: `REPEATABLE READ` takes gap locks on missing keys and deadlocks far more often
//! (still correctly: deadlocks are retried).
//!
//! # Clock
//!
//! Deadlines are taken from the **database's** clock (`UTC_TIMESTAMP(6)` as Unix
//! milliseconds, whatever the session time zone), never the consumer's: consumers on several
//! hosts then agree on when a lease runs out whatever their clock skew.
//!
//! # Dedup in the business transaction
//!
//! [`MySqlStore::run_in_tx`] claims a key, runs the handler's own writes and marks the key
//! consumed in one transaction. A concurrent duplicate waits on the primary key until the
//! first commits (then it is a duplicate) or rolls back (then it runs).
//!
//! # Table
//!
//! [`MySqlStore::connect`] creates the table if it does not exist (see
//! [`MySqlStore::migrate`]). A DBA can create it by hand instead, with `{table}` replaced by
//! the table name (default `idemq_records`). Keys are `VARBINARY`, compared byte for byte:
//! no collation folds case or trailing spaces.
//!
//! ```sql
#![doc = include_str!("../migrations/0001_records.sql")]
//! ```
//!
//! # Transaction log
//!
//! [`MySqlTxLog`] is the [`TxLog`] of transactional messages: a producer writes
//! [`TxLog::record`] first in its local transaction (from [`TxLog::begin`]), then its
//! business change, and commits; a broker check-back reads [`TxLog::state`] and, when no
//! row shows up, settles the id with [`TxLog::resolve`], which waits on the primary key for
//! a transaction still holding the id. Its table (default `idemq_tx_log`, created by
//! [`MySqlTxLog::migrate`]) is:
//!
//! ```sql
#![doc = include_str!("../migrations/0002_tx_log.sql")]
//! ```
#![warn(missing_docs)]

mod migrate;
mod sql;
mod store;
mod tx;
mod tx_log;

pub use idemq_sql::{
    SweepStats, Sweeper, TxEntry, TxLog, TxLogError, TxState, DEFAULT_TABLE, DEFAULT_TX_LOG_TABLE,
};
pub use store::MySqlStore;
pub use tx_log::MySqlTxLog;
