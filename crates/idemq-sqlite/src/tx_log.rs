//! The transaction log of transactional messages in a SQLite table.

use std::sync::Arc;

use idemq_core::store::StoreError;
use idemq_core::time::{now_ms, UnixMillis};
use idemq_sql::{store_error, TableName, TxEntry, TxLog, TxLogError, TxState};
use sqlx::sqlite::{SqliteArguments, SqliteConnection, SqlitePool};
use sqlx::{Sqlite, Transaction};

const MIGRATION: &str = include_str!("../migrations/0002_tx_log.sql");

/// A [`TxLog`] in a SQLite table (default `idemq_tx_log`). Cheap to clone: clones share the
/// pool.
///
/// Every transaction it opens starts with `BEGIN IMMEDIATE`, taking SQLite's write lock
/// first: a [`TxLog::resolve`] meeting a transaction that holds the lock (and perhaps the
/// id's uncommitted row) waits for it on the pool's busy timeout, which must be longer than
/// the producers' local transactions (the pool should use WAL and a busy timeout, as
/// `SqliteStore::connect` sets up).
#[derive(Debug, Clone)]
pub struct SqliteTxLog {
    pool: SqlitePool,
    table: TableName,
    sql: Arc<Sql>,
}

/// The statements, built once from the validated table name.
#[derive(Debug)]
struct Sql {
    record: String,
    settle: String,
    state: String,
    purge: String,
}

impl Sql {
    fn new(t: &TableName) -> Self {
        let insert = format!(
            "INSERT INTO {t} (tx_id, business_key, topic, state, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5)"
        );
        Self {
            settle: format!("{insert} ON CONFLICT (tx_id) DO NOTHING"),
            record: insert,
            state: format!("SELECT state FROM {t} WHERE tx_id = ?1"),
            purge: format!(
                "DELETE FROM {t} WHERE rowid IN \
                 (SELECT rowid FROM {t} WHERE created_at < ?1 ORDER BY created_at LIMIT ?2)"
            ),
        }
    }
}

impl SqliteTxLog {
    /// A log over `pool` in `table` (validated, see [`TableName`]). Nothing is run: call
    /// [`SqliteTxLog::migrate`] unless the table exists.
    pub fn new(pool: SqlitePool, table: &str) -> Result<Self, StoreError> {
        let table = TableName::new(table)?;
        Ok(Self {
            pool,
            sql: Arc::new(Sql::new(&table)),
            table,
        })
    }

    /// Applies `migrations/0002_tx_log.sql`: creates the table and its index if they do not
    /// exist.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        crate::migrate::apply(&self.pool, MIGRATION, &self.table).await
    }

    /// The connection pool, for the application's own queries.
    pub fn pool(&self) -> &SqlitePool {
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
    ) -> sqlx::query::Query<'q, Sqlite, SqliteArguments<'q>> {
        sqlx::query(sql)
            .bind(entry.tx_id.as_str())
            .bind(entry.business_key.as_deref())
            .bind(entry.topic.as_str())
            .bind(state.as_str())
            .bind(now_ms())
    }
}

impl TxLog for SqliteTxLog {
    type Db = Sqlite;

    /// `BEGIN IMMEDIATE`: the transaction holds SQLite's write lock from the start, so other
    /// writers (in this process or another) queue on the busy timeout.
    async fn begin(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        self.pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(store_error)
    }

    /// A plain `INSERT`; a duplicate id fails that statement only, and the transaction
    /// stays open for the caller to roll back.
    async fn record(&self, conn: &mut SqliteConnection, entry: &TxEntry) -> Result<(), TxLogError> {
        Self::insert(&self.sql.record, entry, TxState::Committed)
            .execute(conn)
            .await
            .map(drop)
            .map_err(|e| TxLogError::from_insert(e, &entry.tx_id))
    }

    async fn state(&self, tx_id: &str) -> Result<Option<TxState>, StoreError> {
        let state: Option<String> = sqlx::query_scalar(&self.sql.state)
            .bind(tx_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(store_error)?;
        state.as_deref().map(TxState::parse).transpose()
    }

    async fn resolve(&self, entry: &TxEntry) -> Result<TxState, StoreError> {
        // Under the write lock nothing can change the row between the insert and the read.
        // Errors are decided here: SQLite's busy timeout already waited.
        let mut tx = self.begin().await?;
        Self::insert(&self.sql.settle, entry, TxState::RolledBack)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        let state: String = sqlx::query_scalar(&self.sql.state)
            .bind(entry.tx_id.as_str())
            .fetch_one(&mut *tx)
            .await
            .map_err(store_error)?;
        tx.commit().await.map_err(store_error)?;
        TxState::parse(&state)
    }

    async fn purge(&self, before: UnixMillis, batch: u64) -> Result<u64, StoreError> {
        let done = sqlx::query(&self.sql.purge)
            .bind(before)
            .bind(i64::try_from(batch).unwrap_or(i64::MAX))
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(done.rows_affected())
    }
}
