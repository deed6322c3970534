//! The transaction log of transactional messages in a MySQL or MariaDB table.

use std::sync::Arc;

use idemq_core::store::StoreError;
use idemq_core::time::{now_ms, UnixMillis};
use idemq_sql::{retrying, store_error, TableName, TxEntry, TxLog, TxLogError, TxState};
use sqlx::mysql::{MySqlConnection, MySqlPool};
use sqlx::{MySql, Transaction};

const MIGRATION: &str = include_str!("../migrations/0002_tx_log.sql");

/// A [`TxLog`] in a MySQL or MariaDB table (default `idemq_tx_log`). Cheap to clone: clones
/// share the pool.
///
/// Ids are `VARBINARY`, compared byte for byte. [`TxLog::resolve`] runs
/// `INSERT ... ON DUPLICATE KEY UPDATE` and reads the row back under its lock, in a short
/// transaction of its own; an open transaction holding the id's uncommitted row makes it
/// wait on the primary key (up to `innodb_lock_wait_timeout`).
#[derive(Debug, Clone)]
pub struct MySqlTxLog {
    pool: MySqlPool,
    table: TableName,
    sql: Arc<Sql>,
}

/// The statements, built once from the validated table name.
#[derive(Debug)]
struct Sql {
    record: String,
    settle: String,
    state: String,
    locked_state: String,
    purge: String,
}

impl Sql {
    fn new(t: &TableName) -> Self {
        let insert = format!(
            "INSERT INTO {t} (tx_id, business_key, topic, state, created_at) \
             VALUES (?, ?, ?, ?, ?)"
        );
        Self {
            // Not `INSERT IGNORE`: that would also swallow other errors as warnings.
            settle: format!("{insert} ON DUPLICATE KEY UPDATE tx_id = tx_id"),
            record: insert,
            state: format!("SELECT state FROM {t} WHERE tx_id = ?"),
            locked_state: format!("SELECT state FROM {t} WHERE tx_id = ? FOR UPDATE"),
            // Small batches in index order: each statement locks few rows, briefly.
            purge: format!("DELETE FROM {t} WHERE created_at < ? ORDER BY created_at LIMIT ?"),
        }
    }
}

impl MySqlTxLog {
    /// A log over `pool` in `table` (validated, see [`TableName`]). Nothing is run: call
    /// [`MySqlTxLog::migrate`] unless the table exists.
    pub fn new(pool: MySqlPool, table: &str) -> Result<Self, StoreError> {
        let table = TableName::new(table)?;
        Ok(Self {
            pool,
            sql: Arc::new(Sql::new(&table)),
            table,
        })
    }

    /// Applies `migrations/0002_tx_log.sql`: creates the table if it does not exist. Safe to
    /// run from many processes at once.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        crate::migrate::apply(&self.pool, MIGRATION, &self.table).await
    }

    /// The connection pool, for the application's own queries.
    pub fn pool(&self) -> &MySqlPool {
        &self.pool
    }

    /// The table name.
    pub fn table(&self) -> &TableName {
        &self.table
    }

    fn insert<'q>(
        sql: &'q str,
        entry: &'q TxEntry,
        state: TxState,
    ) -> sqlx::query::Query<'q, MySql, sqlx::mysql::MySqlArguments> {
        sqlx::query(sql)
            .bind(entry.tx_id.as_bytes())
            .bind(entry.business_key.as_deref().map(str::as_bytes))
            .bind(entry.topic.as_bytes())
            .bind(state.as_str())
            .bind(now_ms())
    }
}

impl TxLog for MySqlTxLog {
    type Db = MySql;

    async fn begin(&self) -> Result<Transaction<'static, MySql>, StoreError> {
        self.pool.begin().await.map_err(store_error)
    }

    /// A plain `INSERT`; a duplicate id fails that statement only, and the transaction
    /// stays open for the caller to roll back.
    async fn record(&self, conn: &mut MySqlConnection, entry: &TxEntry) -> Result<(), TxLogError> {
        Self::insert(&self.sql.record, entry, TxState::Committed)
            .execute(conn)
            .await
            .map(drop)
            .map_err(|e| TxLogError::from_insert(e, &entry.tx_id))
    }

    async fn state(&self, tx_id: &str) -> Result<Option<TxState>, StoreError> {
        let state: Option<String> = sqlx::query_scalar(&self.sql.state)
            .bind(tx_id.as_bytes())
            .fetch_optional(&self.pool)
            .await
            .map_err(store_error)?;
        state.as_deref().map(TxState::parse).transpose()
    }

    async fn resolve(&self, entry: &TxEntry) -> Result<TxState, StoreError> {
        // The insert waits on the primary key for a transaction holding the uncommitted
        // row, then locks the row, so the read sees what is committed and nothing purges it
        // in between. Deadlocks (InnoDB's answer to some racing inserts) are retried.
        let state: String = retrying(|| async {
            let mut tx = self.pool.begin().await?;
            Self::insert(&self.sql.settle, entry, TxState::RolledBack)
                .execute(&mut *tx)
                .await?;
            let state = sqlx::query_scalar(&self.sql.locked_state)
                .bind(entry.tx_id.as_bytes())
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(state)
        })
        .await?;
        TxState::parse(&state)
    }

    async fn purge(&self, before: UnixMillis, batch: u64) -> Result<u64, StoreError> {
        let done = sqlx::query(&self.sql.purge)
            .bind(before)
            .bind(batch)
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(done.rows_affected())
    }
}
