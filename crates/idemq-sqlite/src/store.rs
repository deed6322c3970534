use std::collections::HashMap;
use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::BoxFuture;
use idemq_core::adapter::HandlerFuture;
use idemq_core::record::{Claim, ClaimRequest, Completion, FencingToken, Record};
use idemq_core::store::TransactionalStore;
use idemq_core::store::{transition, ScopeStats, Store, StoreError};
use idemq_core::time::{now_ms, UnixMillis};
use idemq_core::{
    EngineConfig, EngineError, Fingerprint, HandlerOutput, IdempotencyKey, Outcome, RecordKey,
    Scope,
};
use idemq_sql::{
    check_result_size, claim_next, decide_completions, split_oversized, store_error, ClaimedTx,
    InTx, RawRecord, RowKey, Sweeper, TableName, TxClaim, TxError,
};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};
use tokio::sync::{Mutex, OwnedMutexGuard};

const MIGRATION: &str = include_str!("../migrations/0001_records.sql");

/// How long a writer waits for another process's write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The most rows one statement of a batch reads or writes: 11 parameters a row stays far
/// below SQLite's limit on bound parameters.
const ROWS_PER_STATEMENT: usize = 500;

/// An idempotency store in a SQLite file. Cheap to clone: clones share the pool.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    table: TableName,
    sql: Arc<Sql>,
    writer: Arc<Mutex<()>>,
    max_result_bytes: usize,
}

/// The statements, built once from the validated table name.
#[derive(Debug)]
struct Sql {
    table: String,
    select: String,
    select_live: String,
    upsert: String,
    purge: String,
    stats: String,
    sweep: String,
}

impl Sql {
    fn new(t: &TableName) -> Self {
        let cols = RawRecord::COLUMNS;
        Self {
            table: t.to_string(),
            select: format!("SELECT {cols} FROM {t} WHERE scope = ?1 AND idem_key = ?2"),
            select_live: format!(
                "SELECT {cols} FROM {t} WHERE scope = ?1 AND idem_key = ?2 AND expires_at > ?3"
            ),
            upsert: format!(
                "INSERT INTO {t} (scope, idem_key, {cols}) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) \
                 ON CONFLICT (scope, idem_key) DO UPDATE SET \
                 state = excluded.state, token = excluded.token, \
                 lease_until = excluded.lease_until, expires_at = excluded.expires_at, \
                 fingerprint = excluded.fingerprint, result = excluded.result, \
                 attempts = excluded.attempts, created_at = excluded.created_at, \
                 updated_at = excluded.updated_at"
            ),
            purge: format!("DELETE FROM {t} WHERE scope = ?1"),
            stats: format!(
                "SELECT state, COUNT(*) FROM {t} WHERE scope = ?1 AND expires_at > ?2 \
                 GROUP BY state"
            ),
            sweep: format!(
                "DELETE FROM {t} WHERE rowid IN \
                 (SELECT rowid FROM {t} WHERE expires_at <= ?1 LIMIT ?2)"
            ),
        }
    }

    /// Reads the rows of `n` keys (scope, key pairs), with their keys.
    fn select_many(&self, n: usize) -> String {
        let keys = vec!["(?, ?)"; n].join(", ");
        format!(
            "SELECT scope, idem_key, {} FROM {} WHERE (scope, idem_key) IN (VALUES {keys})",
            RawRecord::COLUMNS,
            self.table
        )
    }

    /// Writes `n` full rows (scope, key and the record's columns) over existing ones.
    fn upsert_many(&self, n: usize) -> String {
        let rows = vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"; n].join(", ");
        format!(
            "INSERT INTO {} (scope, idem_key, {}) VALUES {rows} \
             ON CONFLICT (scope, idem_key) DO UPDATE SET \
             state = excluded.state, token = excluded.token, \
             lease_until = excluded.lease_until, expires_at = excluded.expires_at, \
             fingerprint = excluded.fingerprint, result = excluded.result, \
             attempts = excluded.attempts, created_at = excluded.created_at, \
             updated_at = excluded.updated_at",
            self.table,
            RawRecord::COLUMNS
        )
    }
}

impl SqliteStore {
    /// Opens (creating it if missing) the database at `url` — `sqlite://path/to/file.db`,
    /// `sqlite:file.db` or a bare path — in WAL mode with a busy timeout, and creates the
    /// default table `idemq_records` if it does not exist.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url).map_err(store_error)?;
        Self::connect_with(options, idemq_sql::DEFAULT_TABLE).await
    }

    /// Like [`SqliteStore::connect`] with explicit connect options and table name. The
    /// options are completed with `create_if_missing`, WAL, `synchronous = NORMAL` and the
    /// busy timeout.
    pub async fn connect_with(
        options: SqliteConnectOptions,
        table: &str,
    ) -> Result<Self, StoreError> {
        let table = TableName::new(table)?;
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(BUSY_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(store_error)?;
        let store = Self::with_table(pool, table);
        store.migrate().await?;
        Ok(store)
    }

    /// A store over an existing pool, using `table` (validated, see
    /// [`TableName`](idemq_sql::TableName)). Nothing is run: call
    /// [`SqliteStore::migrate`] unless the table exists. The pool should use WAL and a
    /// busy timeout, as [`SqliteStore::connect`] sets up.
    pub fn from_pool(pool: SqlitePool, table: &str) -> Result<Self, StoreError> {
        Ok(Self::with_table(pool, TableName::new(table)?))
    }

    fn with_table(pool: SqlitePool, table: TableName) -> Self {
        Self {
            pool,
            sql: Arc::new(Sql::new(&table)),
            table,
            writer: Arc::new(Mutex::new(())),
            max_result_bytes: idemq_sql::DEFAULT_MAX_RESULT_BYTES,
        }
    }

    /// Sets the largest result stored (default 1 MiB); larger ones are refused with
    /// [`StoreError::ResultTooLarge`].
    pub fn with_max_result_bytes(mut self, max: usize) -> Self {
        self.max_result_bytes = max;
        self
    }

    /// Creates the table and its index if they do not exist.
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

    /// Deletes at most `batch` expired records; returns how many were deleted.
    pub async fn sweep(&self, batch: u64) -> Result<u64, StoreError> {
        let _writer = self.writer.lock().await;
        let done = sqlx::query(&self.sql.sweep)
            .bind(now_ms())
            .bind(i64::try_from(batch).unwrap_or(i64::MAX))
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(done.rows_affected())
    }

    /// Spawns a background task deleting expired records every `interval`, at most `batch`
    /// per statement. Dropping the returned handle stops it.
    pub fn spawn_sweeper(&self, interval: Duration, batch: u64) -> Sweeper {
        Sweeper::spawn_on(self.clone(), interval, batch, |s, n| async move {
            s.sweep(n).await
        })
    }

    /// Claims `key` in `config`'s scope, runs `handler` on the same transaction and marks the
    /// key consumed, all in one transaction: the handler's writes and the idempotency record
    /// commit together or not at all.
    ///
    /// - A new key (or a released or expired claim) runs the handler; `Ok` commits the
    ///   handler's writes with the `CONSUMED` record and its result ([`Outcome::Processed`]).
    /// - A handler error rolls everything back, the claim included ([`Outcome::Failed`]):
    ///   a redelivery runs it again.
    /// - A consumed key answers [`Outcome::Duplicate`] with the stored result, a key claimed
    ///   through [`Store::claim`] and still leased [`Outcome::InProgress`], another payload
    ///   [`Outcome::Conflict`]; the handler does not run.
    /// - A result over `config.max_result_bytes` or the store's limit rolls back and answers
    ///   [`StoreError::ResultTooLarge`].
    ///
    /// The transaction holds SQLite's write lock while the handler runs, so other writers
    /// wait: keep handlers short, and do not call this store from inside one.
    ///
    /// ```no_run
    /// # use idemq_core::{EngineConfig, IdempotencyKey, Scope};
    /// # async fn demo(store: idemq_sqlite::SqliteStore) -> Result<(), Box<dyn std::error::Error>> {
    /// let config = EngineConfig::new(Scope::new("payments")?);
    /// let outcome = store
    ///     .run_in_tx(&config, IdempotencyKey::new("pay-1001")?, None, |tx| {
    ///         Box::pin(async move {
    ///             sqlx::query("INSERT INTO payments (serial, cents) VALUES (?1, ?2)")
    ///                 .bind("pay-1001")
    ///                 .bind(500)
    ///                 .execute(&mut *tx)
    ///                 .await?;
    ///             Ok::<_, sqlx::Error>("paid")
    ///         })
    ///     })
    ///     .await?;
    /// assert!(outcome.is_ackable());
    /// # Ok(()) }
    /// ```
    pub async fn run_in_tx<F, T, E>(
        &self,
        config: &EngineConfig,
        key: IdempotencyKey,
        fingerprint: Option<Fingerprint>,
        handler: F,
    ) -> Result<Outcome<E>, EngineError>
    where
        F: for<'t> FnOnce(&'t mut SqliteConnection) -> BoxFuture<'t, Result<T, E>>,
        T: HandlerOutput,
    {
        idemq_sql::run_in_tx(self, config, key, fingerprint, handler).await
    }

    /// Takes this process's writer turn, then SQLite's write lock.
    async fn begin(
        &self,
    ) -> Result<(OwnedMutexGuard<()>, Transaction<'static, Sqlite>), StoreError> {
        let writer = self.writer.clone().lock_owned().await;
        let tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(store_error)?;
        Ok((writer, tx))
    }

    async fn read(
        &self,
        conn: &mut SqliteConnection,
        key: &RecordKey,
    ) -> Result<Option<Record>, StoreError> {
        sqlx::query_as::<_, RawRecord>(&self.sql.select)
            .bind(key.scope.as_str())
            .bind(key.key.as_str())
            .fetch_optional(conn)
            .await
            .map_err(store_error)?
            .map(RawRecord::into_record)
            .transpose()
    }

    async fn write(
        &self,
        conn: &mut SqliteConnection,
        key: &RecordKey,
        rec: &Record,
    ) -> Result<(), StoreError> {
        let row = RawRecord::from_record(rec);
        sqlx::query(&self.sql.upsert)
            .bind(key.scope.as_str())
            .bind(key.key.as_str())
            .bind(row.state)
            .bind(row.token)
            .bind(row.lease_until)
            .bind(row.expires_at)
            .bind(row.fingerprint)
            .bind(row.result)
            .bind(row.attempts)
            .bind(row.created_at)
            .bind(row.updated_at)
            .execute(conn)
            .await
            .map_err(store_error)?;
        Ok(())
    }

    /// Reads the rows of `keys`, a few hundred per statement.
    async fn read_many(
        &self,
        conn: &mut SqliteConnection,
        keys: &[&RecordKey],
    ) -> Result<HashMap<RowKey, Record>, StoreError> {
        let mut out = HashMap::with_capacity(keys.len());
        for chunk in keys.chunks(ROWS_PER_STATEMENT) {
            let sql = self.sql.select_many(chunk.len());
            let mut q = sqlx::query(&sql);
            for k in chunk {
                q = q.bind(k.scope.as_str()).bind(k.key.as_str());
            }
            for row in q.fetch_all(&mut *conn).await.map_err(store_error)? {
                let raw: RawRecord = sqlx::FromRow::from_row(&row).map_err(store_error)?;
                let k: RowKey = (
                    row.try_get("scope").map_err(store_error)?,
                    row.try_get("idem_key").map_err(store_error)?,
                );
                out.insert(k, raw.into_record()?);
            }
        }
        Ok(out)
    }

    /// Writes `writes` back, a few hundred rows per statement.
    async fn write_many(
        &self,
        conn: &mut SqliteConnection,
        writes: HashMap<RowKey, Record>,
    ) -> Result<(), StoreError> {
        let writes: Vec<(RowKey, Record)> = writes.into_iter().collect();
        for chunk in writes.chunks(ROWS_PER_STATEMENT) {
            let sql = self.sql.upsert_many(chunk.len());
            let mut q = sqlx::query(&sql);
            for ((scope, key), rec) in chunk {
                let row = RawRecord::from_record(rec);
                q = q
                    .bind(scope.as_str())
                    .bind(key.as_str())
                    .bind(row.state)
                    .bind(row.token)
                    .bind(row.lease_until)
                    .bind(row.expires_at)
                    .bind(row.fingerprint)
                    .bind(row.result)
                    .bind(row.attempts)
                    .bind(row.created_at)
                    .bind(row.updated_at);
            }
            q.execute(&mut *conn).await.map_err(store_error)?;
        }
        Ok(())
    }

    /// Reads, applies `f` and writes back in one transaction; `None` from `f` is a lost lease.
    async fn transition(
        &self,
        key: &RecordKey,
        f: impl FnOnce(Option<&Record>, UnixMillis) -> Option<Record>,
    ) -> Result<Record, StoreError> {
        let (_writer, mut tx) = self.begin().await?;
        let current = self.read(&mut tx, key).await?;
        let next = f(current.as_ref(), now_ms())
            .ok_or_else(|| StoreError::LeaseLost { key: key.clone() })?;
        self.write(&mut tx, key, &next).await?;
        tx.commit().await.map_err(store_error)?;
        Ok(next)
    }
}

/// The writer turn is held until the commit, and the claimed row is completed from memory.
impl InTx for SqliteStore {
    type Db = Sqlite;
    type Held = (OwnedMutexGuard<()>, Record);

    fn max_result_bytes(&self) -> usize {
        self.max_result_bytes
    }

    async fn claim_in_tx(
        &self,
        req: &ClaimRequest,
    ) -> Result<TxClaim<Sqlite, Self::Held>, TxError> {
        // Errors are decided store errors here: SQLite's busy timeout already waited.
        let (writer, mut tx) = self.begin().await?;
        let current = self.read(&mut tx, &req.key).await?;
        let (claim, write) = claim_next(current.as_ref(), req, now_ms());
        let (Claim::Acquired { token, attempt, .. }, Some(claimed)) = (&claim, write) else {
            // Nothing was written; dropping the transaction rolls it back.
            return Ok(Err(claim));
        };
        self.write(&mut tx, &req.key, &claimed).await?;
        Ok(Ok(ClaimedTx {
            tx,
            token: *token,
            attempt: *attempt,
            held: (writer, claimed),
        }))
    }

    async fn mark_consumed(
        &self,
        conn: &mut SqliteConnection,
        req: &ClaimRequest,
        token: FencingToken,
        (_, claimed): &Self::Held,
        result: Option<&[u8]>,
    ) -> Result<(), TxError> {
        let done = transition::complete(Some(claimed), token, result, req.retention, now_ms())
            .ok_or_else(|| StoreError::LeaseLost {
                key: req.key.clone(),
            })?;
        Ok(self.write(conn, &req.key, &done).await?)
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn claim(&self, req: &ClaimRequest) -> Result<Claim, StoreError> {
        let mut claims = self.claim_batch(std::slice::from_ref(req)).await?;
        Ok(claims.remove(0))
    }

    async fn claim_batch(&self, reqs: &[ClaimRequest]) -> Result<Vec<Claim>, StoreError> {
        if reqs.is_empty() {
            return Ok(Vec::new());
        }
        let (_writer, mut tx) = self.begin().await?;
        let now = now_ms();
        let mut out = Vec::with_capacity(reqs.len());
        for req in reqs {
            let current = self.read(&mut tx, &req.key).await?;
            let (claim, write) = claim_next(current.as_ref(), req, now);
            if let Some(rec) = write {
                self.write(&mut tx, &req.key, &rec).await?;
            }
            out.push(claim);
        }
        tx.commit().await.map_err(store_error)?;
        Ok(out)
    }

    async fn complete(
        &self,
        key: &RecordKey,
        token: FencingToken,
        result: Option<&[u8]>,
        retention: Duration,
    ) -> Result<(), StoreError> {
        check_result_size(result, self.max_result_bytes)?;
        self.transition(key, |cur, now| {
            transition::complete(cur, token, result, retention, now)
        })
        .await
        .map(drop)
    }

    async fn complete_batch(
        &self,
        items: &[Completion<'_>],
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        let (mut out, todo) = split_oversized(items, self.max_result_bytes);
        if todo.is_empty() {
            return Ok(out);
        }
        // One transaction: one read of every row, the rule applied in memory, one write.
        let (_writer, mut tx) = self.begin().await?;
        let keys: Vec<&RecordKey> = todo.iter().map(|&i| items[i].key).collect();
        let rows = self.read_many(&mut tx, &keys).await?;
        let decided = decide_completions(items, &todo, rows, now_ms());
        self.write_many(&mut tx, decided.writes).await?;
        tx.commit().await.map_err(store_error)?;
        for (i, answer) in decided.answers {
            out[i] = answer;
        }
        Ok(out)
    }

    async fn release(&self, key: &RecordKey, token: FencingToken) -> Result<(), StoreError> {
        self.transition(key, |cur, now| transition::release(cur, token, now))
            .await
            .map(drop)
    }

    async fn extend(
        &self,
        key: &RecordKey,
        token: FencingToken,
        lease: Duration,
    ) -> Result<UnixMillis, StoreError> {
        self.transition(key, |cur, now| transition::extend(cur, token, lease, now))
            .await
            .map(|r| r.lease_until)
    }

    async fn get(&self, key: &RecordKey) -> Result<Option<Record>, StoreError> {
        sqlx::query_as::<_, RawRecord>(&self.sql.select_live)
            .bind(key.scope.as_str())
            .bind(key.key.as_str())
            .bind(now_ms())
            .fetch_optional(&self.pool)
            .await
            .map_err(store_error)?
            .map(RawRecord::into_record)
            .transpose()
    }

    async fn purge(&self, scope: &Scope) -> Result<u64, StoreError> {
        let _writer = self.writer.lock().await;
        let done = sqlx::query(&self.sql.purge)
            .bind(scope.as_str())
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(done.rows_affected())
    }

    async fn stats(&self, scope: &Scope) -> Result<ScopeStats, StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(&self.sql.stats)
            .bind(scope.as_str())
            .bind(now_ms())
            .fetch_all(&self.pool)
            .await
            .map_err(store_error)?;
        idemq_sql::scope_stats(rows)
    }
}

impl TransactionalStore for SqliteStore {
    type Conn = SqliteConnection;

    fn run_in_tx<'a, F, T, E>(
        &'a self,
        config: &'a EngineConfig,
        key: IdempotencyKey,
        fingerprint: Option<Fingerprint>,
        handler: F,
    ) -> impl Future<Output = Result<Outcome<E>, EngineError>> + Send + 'a
    where
        F: for<'t> FnOnce(&'t mut SqliteConnection) -> HandlerFuture<'t, T, E> + Send + 'a,
        T: HandlerOutput + Send + 'a,
        E: Send + 'a,
    {
        SqliteStore::run_in_tx(self, config, key, fingerprint, handler)
    }
}
