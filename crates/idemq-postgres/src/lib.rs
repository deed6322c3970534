//! The PostgreSQL store of idemq.
//!
//! ```no_run
//! use idemq_core::{Engine, EngineConfig, Envelope, KeyStrategy, Scope};
//! use idemq_postgres::PgStore;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let store = PgStore::connect("postgres://postgres@127.0.0.1:5432/test").await?;
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
//! - A claim first tries `INSERT ... ON CONFLICT (scope, idem_key) DO NOTHING`: a new key is
//!   acquired in one round trip, and of two concurrent inserts the unique key lets exactly one
//!   through. An existing key is read with `SELECT ... FOR UPDATE` in a transaction, the
//!   rules of [`idemq_core::store::transition`] are applied in Rust and the row is updated.
//! - A batch claim does the same for all its keys with one `INSERT ... SELECT FROM UNNEST`
//!   and, for the keys that existed, one locking `SELECT` and one `UPDATE ... FROM UNNEST`.
//!   Rows are inserted and locked in key order, so concurrent batches do not deadlock; a
//!   deadlock or serialization failure that happens anyway is retried.
//! - `complete`, `release` and `extend` are single conditional `UPDATE`s on the token.
//! - `complete_batch` is one statement: it locks the batch's rows in key order, completes
//!   each with the first completion whose token owns it (`UPDATE ... FROM UNNEST`) and
//!   answers every completion as a single `complete` in batch order would.
//!
//! # Clock
//!
//! Deadlines are taken from the **database's** clock (`statement_timestamp()`, as Unix
//! milliseconds), never the consumer's: consumers on several hosts then agree on when a
//! lease runs out whatever their clock skew, which is what a takeover depends on.
//!
//! # Dedup in the business transaction
//!
//! [`PgStore::run_in_tx`] claims a key, runs the handler's own writes and marks the key
//! consumed in one transaction. A concurrent duplicate waits on the unique key until the
//! first commits (then it is a duplicate) or rolls back (then it runs).
//!
//! # Table
//!
//! [`PgStore::connect`] creates the table if it does not exist (see [`PgStore::migrate`]).
//! A DBA can create it by hand instead, with `{table}` replaced by the table name (default
//! `idemq_records`):
//!
//! ```sql
#![doc = include_str!("../migrations/0001_records.sql")]
//! ```
//!
//! # Transaction log
//!
//! [`PgTxLog`] is the [`TxLog`] of transactional messages: a producer writes
//! [`TxLog::record`] first in its local transaction (from [`TxLog::begin`]), then its
//! business change, and commits; a broker check-back reads [`TxLog::state`] and, when no
//! row shows up, settles the id with [`TxLog::resolve`], which waits on the primary key for
//! a transaction still holding the id. Its table (default `idemq_tx_log`, created by
//! [`PgTxLog::migrate`]) is:
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
pub use store::PgStore;
pub use tx_log::PgTxLog;
