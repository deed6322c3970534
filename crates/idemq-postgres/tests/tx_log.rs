//! The PostgreSQL transaction log against the shared `tx_log` rules, on the local server.

use std::time::Duration;

use idemq_postgres::PgTxLog;
use sqlx::postgres::PgPoolOptions;

const URL: &str = "postgres://postgres@127.0.0.1:5432/test";
const SERVER: &str = "PostgreSQL at 127.0.0.1:5432 (db test)";

/// A migrated log on `table`, on a pool of its own at the server's default isolation level.
async fn log(table: &str) -> PgTxLog {
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(10))
        .connect(URL)
        .await
        .unwrap_or_else(|e| panic!("{SERVER} is required: {e}"));
    let log = PgTxLog::new(pool, table).unwrap();
    log.migrate().await.unwrap();
    log
}

/// Drops the test's own table.
async fn drop_table(log: PgTxLog) {
    sqlx::raw_sql(&format!("DROP TABLE {}", log.table()))
        .execute(log.pool())
        .await
        .unwrap();
}

idemq_conformance::tx_log_conformance! {
    log: |table| log(table),
    drop: |log| drop_table(log),
}

#[tokio::test]
async fn invalid_table_names_are_refused_without_io() {
    let pool = PgPoolOptions::new().connect_lazy(URL).unwrap();
    for bad in ["", "1t", "t;drop table x", "schema.t"] {
        assert!(
            matches!(
                PgTxLog::new(pool.clone(), bad),
                Err(idemq_core::StoreError::Config(_))
            ),
            "{bad:?}"
        );
    }
}
