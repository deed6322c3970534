use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use idemq_core::record::{Claim, ClaimRequest, Completion, FencingToken, Record};
use idemq_core::store::{ScopeStats, Store, StoreError};
use idemq_core::time::{duration_ms, UnixMillis};
use idemq_core::{RecordKey, Scope};
use idemq_sql::{
    check_result_size, claim_next, decide_claims, retrying, row_key, split_oversized, store_error,
    RawRecord, RowKey, Sweeper, TableName, TxError, MAX_RETRIES,
};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::Row;

use crate::sql::Sql;

const MIGRATION: &str = include_str!("../migrations/0001_records.sql");

/// What one statement found for a key being claimed.
enum Probe {
    /// This statement inserted it: acquired with token 1.
    Inserted,
    /// It exists (read without a lock), with the database's clock.
    Row(Record, UnixMillis),
    /// Not visible to the statement: inserted by it for an earlier position, or committed
    /// by another transaction after the statement began, or deleted.
    Missing,
}

/// An idempotency store in a PostgreSQL table. Cheap to clone: clones share the pool.
#[derive(Debug, Clone)]
pub struct PgStore {
    pub(crate) pool: PgPool,
    table: TableName,
    pub(crate) sql: Arc<Sql>,
    pub(crate) max_result_bytes: usize,
}

impl PgStore {
    /// Connects to `url` (`postgres://user@host:port/db`) and creates the default table
    /// `idemq_records` if it does not exist.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url).map_err(store_error)?;
        Self::connect_with(options, idemq_sql::DEFAULT_TABLE).await
    }

    /// Connects with explicit options and table name, and runs the migration.
    pub async fn connect_with(options: PgConnectOptions, table: &str) -> Result<Self, StoreError> {
        let table = TableName::new(table)?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(store_error)?;
        let store = Self::with_table(pool, table);
        store.migrate().await?;
        Ok(store)
    }

    /// A store over an existing pool, using `table` (validated, see [`TableName`]). Nothing
    /// is run: call [`PgStore::migrate`] unless the table exists. A pool made with
    /// `connect_lazy` connects at the first call, so this never fails for a server that is
    /// down: the calls then answer [`StoreError::Unavailable`].
    pub fn from_pool(pool: PgPool, table: &str) -> Result<Self, StoreError> {
        Ok(Self::with_table(pool, TableName::new(table)?))
    }

    fn with_table(pool: PgPool, table: TableName) -> Self {
        Self {
            pool,
            sql: Arc::new(Sql::new(&table)),
            table,
            max_result_bytes: idemq_sql::DEFAULT_MAX_RESULT_BYTES,
        }
    }

    /// Sets the largest result stored (default 1 MiB); larger ones are refused with
    /// [`StoreError::ResultTooLarge`].
    pub fn with_max_result_bytes(mut self, max: usize) -> Self {
        self.max_result_bytes = max;
        self
    }

    /// Applies `migrations/0001_records.sql`: creates the table and its index if they do not
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

    /// Deletes at most `batch` expired records in one short statement; returns how many.
    pub async fn sweep(&self, batch: u64) -> Result<u64, StoreError> {
        let done = sqlx::query(&self.sql.sweep)
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

    /// Inserts the keys at `todo` (first occurrences only) that do not exist; returns the
    /// row keys inserted, which are acquired with token 1.
    pub(crate) async fn insert_new(
        &self,
        conn: &mut PgConnection,
        reqs: &[ClaimRequest],
        todo: &[usize],
    ) -> Result<Vec<RowKey>, sqlx::Error> {
        let mut seen = std::collections::HashSet::new();
        let (mut scopes, mut keys, mut leases, mut keeps, mut fps) =
            (vec![], vec![], vec![], vec![], vec![]);
        for &i in todo {
            let r = &reqs[i];
            if !seen.insert(row_key(r)) {
                continue;
            }
            scopes.push(r.key.scope.as_str());
            keys.push(r.key.key.as_str());
            leases.push(duration_ms(r.lease));
            keeps.push(duration_ms(r.retention.max(r.lease)));
            fps.push(r.fingerprint.map(|f| f.0.to_vec()));
        }
        let rows = sqlx::query(&self.sql.insert_new)
            .bind(scopes)
            .bind(keys)
            .bind(leases)
            .bind(keeps)
            .bind(fps)
            .fetch_all(conn)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    /// Inserts the keys at `todo` that do not exist and reads the others; one answer per
    /// position, in order.
    async fn insert_or_read(
        &self,
        reqs: &[ClaimRequest],
        todo: &[usize],
    ) -> Result<Vec<Probe>, StoreError> {
        retrying(|| self.insert_or_read_once(reqs, todo)).await
    }

    async fn insert_or_read_once(
        &self,
        reqs: &[ClaimRequest],
        todo: &[usize],
    ) -> Result<Vec<Probe>, TxError> {
        let (mut scopes, mut keys, mut leases, mut keeps, mut fps) =
            (vec![], vec![], vec![], vec![], vec![]);
        for &i in todo {
            let r = &reqs[i];
            scopes.push(r.key.scope.as_str());
            keys.push(r.key.key.as_str());
            leases.push(duration_ms(r.lease));
            keeps.push(duration_ms(r.retention.max(r.lease)));
            fps.push(r.fingerprint.map(|f| f.0.to_vec()));
        }
        let rows = sqlx::query(&self.sql.insert_or_read)
            .bind(scopes)
            .bind(keys)
            .bind(leases)
            .bind(keeps)
            .bind(fps)
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let probe = if row.try_get::<bool, _>("inserted")? {
                Probe::Inserted
            } else if let Some(state) = row.try_get::<Option<String>, _>("state")? {
                let raw = RawRecord {
                    state,
                    token: row.try_get("token")?,
                    lease_until: row.try_get("lease_until")?,
                    expires_at: row.try_get("expires_at")?,
                    fingerprint: row.try_get("fingerprint")?,
                    result: row.try_get("result")?,
                    attempts: row.try_get("attempts")?,
                    created_at: row.try_get("created_at")?,
                    updated_at: row.try_get("updated_at")?,
                };
                Probe::Row(raw.into_record()?, row.try_get("now_ms")?)
            } else {
                Probe::Missing
            };
            out.push(probe);
        }
        Ok(out)
    }

    /// Locks the rows of the keys at `todo`, in key order; returns them and the database's
    /// clock (`None` when no row was found).
    pub(crate) async fn lock_rows(
        &self,
        conn: &mut PgConnection,
        reqs: &[ClaimRequest],
        todo: &[usize],
    ) -> Result<(HashMap<RowKey, Record>, Option<UnixMillis>), TxError> {
        let scopes: Vec<&str> = todo.iter().map(|&i| reqs[i].key.scope.as_str()).collect();
        let keys: Vec<&str> = todo.iter().map(|&i| reqs[i].key.key.as_str()).collect();
        let rows = sqlx::query(&self.sql.lock_rows)
            .bind(scopes)
            .bind(keys)
            .fetch_all(conn)
            .await?;
        let mut now = None;
        let mut out = HashMap::with_capacity(rows.len());
        for row in rows {
            let raw: RawRecord = sqlx::FromRow::from_row(&row)?;
            let k: RowKey = (row.try_get("row_scope")?, row.try_get("row_key")?);
            now = Some(row.try_get("now_ms")?);
            out.insert(k, raw.into_record()?);
        }
        Ok((out, now))
    }

    /// Writes back the rows a transition changed, in one statement.
    pub(crate) async fn update_rows(
        &self,
        conn: &mut PgConnection,
        writes: HashMap<RowKey, Record>,
    ) -> Result<(), sqlx::Error> {
        if writes.is_empty() {
            return Ok(());
        }
        let n = writes.len();
        let (mut scopes, mut keys, mut states) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut tokens, mut leases, mut expires, mut fps, mut results) =
            (vec![], vec![], vec![], vec![], vec![]);
        let (mut attempts, mut created, mut updated) = (vec![], vec![], vec![]);
        for ((scope, key), rec) in writes {
            let row = RawRecord::from_record(&rec);
            scopes.push(scope);
            keys.push(key);
            states.push(row.state);
            tokens.push(row.token);
            leases.push(row.lease_until);
            expires.push(row.expires_at);
            fps.push(row.fingerprint);
            results.push(row.result);
            attempts.push(row.attempts);
            created.push(row.created_at);
            updated.push(row.updated_at);
        }
        sqlx::query(&self.sql.update_rows)
            .bind(scopes)
            .bind(keys)
            .bind(states)
            .bind(tokens)
            .bind(leases)
            .bind(expires)
            .bind(fps)
            .bind(results)
            .bind(attempts)
            .bind(created)
            .bind(updated)
            .execute(conn)
            .await?;
        Ok(())
    }

    /// Claims the keys at `todo` that already exist: locks them, decides, writes back.
    /// Returns the answers and the positions whose row vanished meanwhile.
    async fn claim_existing(
        &self,
        reqs: &[ClaimRequest],
        todo: &[usize],
    ) -> Result<(Vec<(usize, Claim)>, Vec<usize>), StoreError> {
        retrying(|| self.claim_existing_once(reqs, todo)).await
    }

    async fn claim_existing_once(
        &self,
        reqs: &[ClaimRequest],
        todo: &[usize],
    ) -> Result<(Vec<(usize, Claim)>, Vec<usize>), TxError> {
        let mut tx = self.pool.begin().await?;
        let (rows, now) = self.lock_rows(&mut tx, reqs, todo).await?;
        let Some(now) = now else {
            return Ok((vec![], todo.to_vec()));
        };
        let decided = decide_claims(reqs, todo, rows, now);
        self.update_rows(&mut tx, decided.writes).await?;
        tx.commit().await?;
        Ok((decided.claims, decided.missing))
    }

    /// Completes the positions `todo` of `items` in one statement; true for each completion
    /// its token owned (completed now, or consumed with it before), in order.
    async fn complete_many(
        &self,
        items: &[Completion<'_>],
        todo: &[usize],
    ) -> Result<Vec<bool>, TxError> {
        let n = todo.len();
        let (mut scopes, mut keys, mut tokens, mut results, mut keeps) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for &i in todo {
            let c = &items[i];
            scopes.push(c.key.scope.as_str());
            keys.push(c.key.key.as_str());
            tokens.push(c.token.0 as i64);
            results.push(c.result);
            keeps.push(duration_ms(c.retention));
        }
        let owned: Vec<bool> = sqlx::query_scalar(&self.sql.complete_batch)
            .bind(scopes)
            .bind(keys)
            .bind(tokens)
            .bind(results)
            .bind(keeps)
            .fetch_all(&self.pool)
            .await?;
        if owned.len() != n {
            return Err(StoreError::Corrupt("complete_batch answered too few rows".into()).into());
        }
        Ok(owned)
    }

    async fn owner_update(
        &self,
        sql: &str,
        key: &RecordKey,
        token: FencingToken,
    ) -> Result<u64, StoreError> {
        let done = sqlx::query(sql)
            .bind(key.scope.as_str())
            .bind(key.key.as_str())
            .bind(token.0 as i64)
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(done.rows_affected())
    }
}

#[async_trait]
impl Store for PgStore {
    async fn claim(&self, req: &ClaimRequest) -> Result<Claim, StoreError> {
        let mut claims = self.claim_batch(std::slice::from_ref(req)).await?;
        Ok(claims.remove(0))
    }

    async fn claim_batch(&self, reqs: &[ClaimRequest]) -> Result<Vec<Claim>, StoreError> {
        let mut out: Vec<Option<Claim>> = vec![None; reqs.len()];
        let mut todo: Vec<usize> = (0..reqs.len()).collect();
        // Each round inserts the new keys and reads the others in one statement; only a
        // claim that must write an existing row (a takeover, a released claim) locks it in a
        // transaction. A row deleted meanwhile goes round again.
        for _ in 0..=MAX_RETRIES {
            if todo.is_empty() {
                break;
            }
            let probes = self.insert_or_read(reqs, &todo).await?;
            let mut owned = std::collections::HashSet::new();
            let mut locked = Vec::new();
            for (&i, probe) in todo.iter().zip(probes) {
                match probe {
                    // The first occurrence of an inserted key owns it; later ones see it.
                    Probe::Inserted if owned.insert(row_key(&reqs[i])) => {
                        out[i] = Some(Claim::Acquired {
                            token: FencingToken(1),
                            attempt: 1,
                            takeover: false,
                        })
                    }
                    Probe::Row(rec, now) => match claim_next(Some(&rec), &reqs[i], now) {
                        (claim, None) => out[i] = Some(claim),
                        (_, Some(_)) => locked.push(i),
                    },
                    _ => locked.push(i),
                }
            }
            if locked.is_empty() {
                break;
            }
            let (claims, missing) = self.claim_existing(reqs, &locked).await?;
            for (i, c) in claims {
                out[i] = Some(c);
            }
            todo = missing;
        }
        out.into_iter()
            .map(|c| {
                c.ok_or_else(|| {
                    StoreError::unavailable(std::io::Error::other(
                        "rows kept vanishing while being claimed",
                    ))
                })
            })
            .collect()
    }

    async fn complete(
        &self,
        key: &RecordKey,
        token: FencingToken,
        result: Option<&[u8]>,
        retention: Duration,
    ) -> Result<(), StoreError> {
        check_result_size(result, self.max_result_bytes)?;
        let done = sqlx::query(&self.sql.complete)
            .bind(key.scope.as_str())
            .bind(key.key.as_str())
            .bind(token.0 as i64)
            .bind(result)
            .bind(duration_ms(retention))
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        if done.rows_affected() == 1
            || self.owner_update(&self.sql.consumed_by, key, token).await? == 1
        {
            Ok(())
        } else {
            Err(StoreError::LeaseLost { key: key.clone() })
        }
    }

    async fn complete_batch(
        &self,
        items: &[Completion<'_>],
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        let (mut out, todo) = split_oversized(items, self.max_result_bytes);
        if todo.is_empty() {
            return Ok(out);
        }
        let owned = retrying(|| self.complete_many(items, &todo)).await?;
        for (&i, owned) in todo.iter().zip(owned) {
            if !owned {
                out[i] = Err(StoreError::LeaseLost {
                    key: items[i].key.clone(),
                });
            }
        }
        Ok(out)
    }

    async fn release(&self, key: &RecordKey, token: FencingToken) -> Result<(), StoreError> {
        match self.owner_update(&self.sql.release, key, token).await? {
            1 => Ok(()),
            _ => Err(StoreError::LeaseLost { key: key.clone() }),
        }
    }

    async fn extend(
        &self,
        key: &RecordKey,
        token: FencingToken,
        lease: Duration,
    ) -> Result<UnixMillis, StoreError> {
        let until: Option<i64> = sqlx::query_scalar(&self.sql.extend)
            .bind(key.scope.as_str())
            .bind(key.key.as_str())
            .bind(token.0 as i64)
            .bind(duration_ms(lease))
            .fetch_optional(&self.pool)
            .await
            .map_err(store_error)?;
        until.ok_or_else(|| StoreError::LeaseLost { key: key.clone() })
    }

    async fn get(&self, key: &RecordKey) -> Result<Option<Record>, StoreError> {
        sqlx::query_as::<_, RawRecord>(&self.sql.get)
            .bind(key.scope.as_str())
            .bind(key.key.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(store_error)?
            .map(RawRecord::into_record)
            .transpose()
    }

    async fn purge(&self, scope: &Scope) -> Result<u64, StoreError> {
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
            .fetch_all(&self.pool)
            .await
            .map_err(store_error)?;
        idemq_sql::scope_stats(rows)
    }
}
