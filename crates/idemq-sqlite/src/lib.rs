//! The SQLite store of idemq: the embedded, zero-setup default, keeping its records in one
//! file.
//!
//! ```no_run
//! use idemq_core::{Engine, EngineConfig, KeyStrategy, Scope};
//! use idemq_sqlite::SqliteStore;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let store = SqliteStore::connect("sqlite://idemq.db").await?;
//! let _sweeper = store.spawn_sweeper(std::time::Duration::from_secs(60), 500);
//! let engine: Engine<idemq_core::Envelope> = Engine::new(
//!     store,
//!     EngineConfig::new(Scope::new("stock-service/orders")?),
//!     KeyStrategy::MessageId,
//! );
//! # Ok(()) }
//! ```
//!
//! # Atomicity
//!
//! Every transition is one `BEGIN IMMEDIATE` transaction: it takes SQLite's write lock
//! first, reads the row, applies the pure rules of [`idemq_core::store::transition`] and
//! writes the row back. Other processes using the same file wait on that lock (up to the
//! busy timeout), so transitions are atomic across processes, not only across tasks. Within
//! one process, writers queue on an async mutex instead of spinning in SQLite's busy handler.
//! A batch is one such transaction too; `complete_batch` reads all its rows in one statement
//! and writes the changed ones back in another.
//!
//! # Clock
//!
//! Deadlines are the local wall clock in Unix milliseconds. A SQLite file is shared only by
//! processes on one machine, which all read the same clock.
//!
//! # Dedup in the business transaction
//!
//! [`SqliteStore::run_in_tx`] claims a key, runs the handler's own writes and marks the key
//! consumed in one transaction: the effect and its idempotency record commit or roll back
//! together.
//!
//! # Table
//!
//! The store creates its table on connect (or on [`SqliteStore::migrate`]):
//!
//! ```sql
#![doc = include_str!("../migrations/0001_records.sql")]
//! ```
//!
//! with `{table}` replaced by the table name (default `idemq_records`).
//!
//! # Transaction log
//!
//! [`SqliteTxLog`] is the [`TxLog`] of transactional messages: a producer writes
//! [`TxLog::record`] first in its local transaction (from [`TxLog::begin`], a
//! `BEGIN IMMEDIATE`), then its business change, and commits; a broker check-back reads
//! [`TxLog::state`] and, when no row shows up, settles the id with [`TxLog::resolve`], which
//! waits for SQLite's write lock (up to the busy timeout) while a local transaction holds
//! it. Its table (default `idemq_tx_log`, created by [`SqliteTxLog::migrate`]) is:
//!
//! ```sql
#![doc = include_str!("../migrations/0002_tx_log.sql")]
//! ```
#![warn(missing_docs)]

mod migrate;
mod store;
mod tx_log;

pub use idemq_sql::{
    SweepStats, Sweeper, TxEntry, TxLog, TxLogError, TxState, DEFAULT_TABLE, DEFAULT_TX_LOG_TABLE,
};
pub use store::SqliteStore;
pub use tx_log::SqliteTxLog;
