//! The transaction log of transactional messages in a PostgreSQL table.

use std::sync::Arc;

use idemq_core::store::StoreError;
use idemq_core::time::{now_ms, UnixMillis};
use idemq_sql::{retrying, store_error, TableName, TxEntry, TxLog, TxLogError, TxState};
use sqlx::postgres::{PgArguments, PgConnection, PgPool};
use sqlx::{Postgres, Transaction};

const MIGRATION: &str = include_str!("../migrations/0002_tx_log.sql");

/// How often [`TxLog::resolve`] inserts again when the row it met was purged before it
/// could read it.
const RESOLVE_ROUNDS: usize = 3;

/// A [`TxLog`] in a PostgreSQL table (default `idemq_tx_log`). Cheap to clone: clones share
/// the pool.
///
/// [`TxLog::resolve`] runs `INSERT ... ON CONFLICT (tx_id) DO NOTHING`, which waits for a
/// transaction holding the id's uncommitted row, then reads the row back.
#[derive(Debug, Clone)]
pub struct PgTxLog {
    pool: PgPool,
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
             VALUES ($1, $2, $3, $4, $5)"
        );
        Self {
            settle: format!("{insert} ON CONFLICT (tx_id) DO NOTHING"),
            record: insert,
            state: format!("SELECT state FROM {t} WHERE tx_id = $1"),
            // Small batches in index order: each statement locks few rows, briefly.
            purge: format!(
                "DELETE FROM {t} WHERE tx_id IN \
                 (SELECT tx_id FROM {t} WHERE created_at < $1 ORDER BY created_at LIMIT $2)"
            ),
        }
    }
}

impl PgTxLog {
    /// A log over `pool` in `table` (validated, see [`TableName`]). Nothing is run: call
    /// [`PgTxLog::migrate`] unless the table exists.
    pub fn new(pool: PgPool, table: &str) -> Result<Self, StoreError> {
        let table = TableName::new(table)?;
        Ok(Self {
            pool,
            sql: Arc::new(Sql::new(&table)),
            table,
        })
    }

    /// Applies `migrations/0002_tx_log.sql`: creates the table and its index if they do not
    /// exist. Safe to run from many processes at once.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        crate::migrate::apply(&self.pool, MIGRATION, &self.table).await
    }

    /// The connection pool, for the application's own queries.
    pub fn pool(&self) -> &PgPool {
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
    ) -> sqlx::query::Query<'q, Postgres, PgArguments> {
        sqlx::query(sql)
            .bind(entry.tx_id.as_str())
            .bind(entry.business_key.as_deref())
            .bind(entry.topic.as_str())
            .bind(state.as_str())
            .bind(now_ms())
    }
}

impl TxLog for PgTxLog {
    type Db = Postgres;

    async fn begin(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        self.pool.begin().await.map_err(store_error)
    }

    /// A plain `INSERT`. A duplicate id aborts the transaction, as any failed statement
    /// does in PostgreSQL: roll it back.
    async fn record(&self, conn: &mut PgConnection, entry: &TxEntry) -> Result<(), TxLogError> {
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
        // Two statements, each in its own snapshot: the read sees the row the insert waited
        // for. A serialization failure (the insert meeting a row its `REPEATABLE READ`
        // snapshot cannot see) is retried with a fresh snapshot.
        for _ in 0..RESOLVE_ROUNDS {
            let state: Option<String> = retrying(|| async {
                Self::insert(&self.sql.settle, entry, TxState::RolledBack)
                    .execute(&self.pool)
                    .await?;
                Ok(sqlx::query_scalar(&self.sql.state)
                    .bind(entry.tx_id.as_str())
                    .fetch_optional(&self.pool)
                    .await?)
            })
            .await?;
            if let Some(state) = state {
                return TxState::parse(&state);
            }
        }
        Err(StoreError::unavailable(std::io::Error::other(format!(
            "transaction {:?} kept being purged while it was resolved",
            entry.tx_id
        ))))
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
