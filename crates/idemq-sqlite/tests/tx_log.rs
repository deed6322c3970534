//! The SQLite transaction log against the shared `tx_log` rules, each test on a fresh
//! temporary file.

use std::time::Duration;

use idemq_sqlite::SqliteTxLog;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};

/// How long a writer waits for SQLite's write lock: far longer than any test's open
/// transaction, so `resolve` waits for it instead of failing busy.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// A migrated log on `table` in a fresh file in a temporary directory that lives as long as
/// the process, in WAL mode (readers do not wait for the writer) with a long busy timeout.
async fn log(table: &str) -> SqliteTxLog {
    let dir = tempfile::tempdir().expect("a temporary directory").keep();
    let options = SqliteConnectOptions::new()
        .filename(dir.join("idemq.db"))
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(BUSY_TIMEOUT);
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .acquire_timeout(BUSY_TIMEOUT)
        .connect_with(options)
        .await
        .expect("open the SQLite file");
    let log = SqliteTxLog::new(pool, table).unwrap();
    log.migrate().await.unwrap();
    log
}

idemq_conformance::tx_log_conformance! {
    log: |table| log(table),
}

#[tokio::test]
async fn invalid_table_names_are_refused_without_io() {
    let pool = SqlitePoolOptions::new()
        .connect_lazy("sqlite::memory:")
        .unwrap();
    for bad in ["", "1t", "t;drop table x", "schema.t"] {
        assert!(
            matches!(
                SqliteTxLog::new(pool.clone(), bad),
                Err(idemq_core::StoreError::Config(_))
            ),
            "{bad:?}"
        );
    }
}
