//! Transactional messages: a half message, the local transaction in SQL with a log row
//! written in it, and check-backs answered from that log.
//!
//! - [`TxProducer`] sends, runs the local transaction and commits or rolls back.
//! - The log is any [`idemq_sql::TxLog`]: `idemq_mysql::MySqlTxLog`,
//!   `idemq_postgres::PgTxLog`, `idemq_sqlite::SqliteTxLog`. Purge it with
//!   [`TxLog::spawn_purger`](idemq_sql::TxLog::spawn_purger).
//! - A check-back answers from the row: committed, rolled back, or unknown while the
//!   message is younger than [`TxConfig::grace`]; past it the log settles the id as rolled
//!   back. A check-back of a message already committed answers committed again, so the
//!   broker may deliver a second copy with the same unique id and business key: consume
//!   with the dedup consumer ([`RmqSource`](crate::RmqSource)).

mod check;
mod listener;
mod producer;

pub use check::CheckCounts;
pub use producer::{AfterCommit, TxConfig, TxError, TxProducer, TxSent};
