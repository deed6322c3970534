//! Shared pieces of the idemq SQL stores (`idemq-sqlite`, `idemq-postgres`, `idemq-mysql`).
//!
//! Like `sqlx-core` beside its drivers, this crate holds what the SQL stores have in common
//! and no driver: the validated [`TableName`], the [`RawRecord`] row and its mapping to a
//! core [`Record`](idemq_core::Record), the claim rule as the stores apply it
//! ([`claim_next`]), the batch rules on rows read under lock ([`decide_claims`],
//! [`decide_completions`]), error mapping ([`store_error`], [`is_retryable`], [`retrying`]), the
//! shape of `run_in_tx` ([`run_in_tx`] over a store's [`InTx`]) and the [`Sweeper`] loop
//! that purges expired rows in small batches, and the [`TxLog`] of transactional messages
//! (one row per local transaction, written in it). With the `bench` feature, the `bench` module
//! is the throughput bench the stores share.
#![warn(missing_docs)]

mod batch;
#[cfg(feature = "bench")]
pub mod bench;
mod error;
mod in_tx;
mod row;
mod sweeper;
mod table;
mod tx;
mod tx_log;

pub use batch::{
    decide_claims, decide_completions, key_row, row_key, split_oversized, Decided,
    DecidedCompletions, RowKey,
};
pub use error::{is_retryable, store_error, TxError};
pub use in_tx::{run_in_tx, ClaimedTx, InTx, TxClaim};
pub use row::{claim_next, RawRecord};
pub use sweeper::{SweepStats, Sweeper};
pub use table::{TableName, DEFAULT_TABLE, MAX_TABLE_NAME};
pub use tx::{
    backoff, check_result_size, retrying, scope_stats, DEFAULT_MAX_RESULT_BYTES, MAX_RETRIES,
};
pub use tx_log::{
    TxEntry, TxLog, TxLogError, TxState, DEFAULT_TX_LOG_TABLE, MAX_TX_FIELD, MAX_TX_ID,
};
