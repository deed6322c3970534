use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use idemq_core::record::{Claim, ClaimRequest, Completion, FencingToken, Record};
use idemq_core::store::{ScopeStats, Store, StoreError};
use idemq_core::time::{duration_ms, UnixMillis};
use idemq_core::{RecordKey, Scope};
use idemq_sql::{
    check_result_size, claim_next, decide_claims, decide_completions, retrying, row_key,
    split_oversized, store_error, RawRecord, RowKey, Sweeper, TableName, TxError, MAX_RETRIES,
};
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlPool, MySqlPoolOptions};
use sqlx::{Executor, Row};

use crate::sql::Sql;

const MIGRATION: &str = include_str!("../migrations/0001_records.sql");

/// An idempotency store in a MySQL or MariaDB table. Cheap to clone: clones share the pool.
#[derive(Debug, Clone)]
pub struct MySqlStore {
    pub(crate) pool: MySqlPool,
    table: TableName,
    pub(crate) sql: Arc<Sql>,
    pub(crate) max_result_bytes: usize,
}

/// The rows read for a set of keys, with the database's clock when any was found.
pub(crate) type Rows = (HashMap<RowKey, Record>, Option<UnixMillis>);

/// The most completions one transaction of `complete_batch` takes: its two statements stay
/// well under the placeholder limit, and its row locks few.
const COMPLETIONS_PER_TX: usize = 1000;

impl MySqlStore {
    /// Connects to `url` (`mysql://user@host:port/db`), sets its sessions to
    /// `READ COMMITTED`, and creates the default table `idemq_records` if it does not exist.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = MySqlConnectOptions::from_str(url).map_err(store_error)?;
        Self::connect_with(options, idemq_sql::DEFAULT_TABLE).await
    }

    /// Connects with explicit options and table name, and runs the migration.
    pub async fn connect_with(
        options: MySqlConnectOptions,
        table: &str,
    ) -> Result<Self, StoreError> {
        let table = TableName::new(table)?;
        let pool = MySqlPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
                        .await
                        .map(drop)
                })
            })
            .connect_with(options)
            .await
            .map_err(store_error)?;
        let store = Self::with_table(pool, table);
        store.migrate().await?;
        Ok(store)
    }

    /// A store over an existing pool, using `table` (validated, see [`TableName`]). Nothing
    /// is run: call [`MySqlStore::migrate`] unless the table exists. The pool's sessions
    /// should use `READ COMMITTED` (see the crate docs).
    pub fn from_pool(pool: MySqlPool, table: &str) -> Result<Self, StoreError> {
        Ok(Self::with_table(pool, TableName::new(table)?))
    }

    fn with_table(pool: MySqlPool, table: TableName) -> Self {
        Self {
            pool,
            sql: Arc::new(Sql::new(&table)),
            table,
            max_result_bytes: idemq_sql::DEFAULT_MAX_RESULT_BYTES,
        }
    }

    /// Sets the largest result stored (default 1 MiB; keep it under the server's
    /// `max_allowed_packet`); larger ones are refused with [`StoreError::ResultTooLarge`].
    pub fn with_max_result_bytes(mut self, max: usize) -> Self {
        self.max_result_bytes = max;
        self
    }

    /// Applies `migrations/0001_records.sql`: creates the table if it does not exist. Safe
    /// to run from many processes at once.
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

    /// Deletes at most `batch` expired records in one short statement; returns how many.
    pub async fn sweep(&self, batch: u64) -> Result<u64, StoreError> {
        let done = sqlx::query(&self.sql.sweep)
            .bind(batch)
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

    /// Inserts new records for the first occurrence of each key at `todo`, sorted so that
    /// concurrent inserts take the key locks in one order; returns how many were inserted.
    pub(crate) async fn insert_new(
        &self,
        conn: &mut MySqlConnection,
        reqs: &[ClaimRequest],
        todo: &[usize],
    ) -> Result<(u64, usize), sqlx::Error> {
        let mut seen = HashSet::new();
        let mut first: Vec<&ClaimRequest> = todo
            .iter()
            .map(|&i| &reqs[i])
            .filter(|r| seen.insert(row_key(r)))
            .collect();
        first.sort_by_key(|r| row_key(r));
        let sql = self.sql.insert_new(first.len());
        let mut q = sqlx::query(&sql);
        for r in &first {
            q = q
                .bind(r.key.scope.as_str().as_bytes())
                .bind(r.key.key.as_str().as_bytes())
                .bind(duration_ms(r.lease))
                .bind(duration_ms(r.retention.max(r.lease)))
                .bind(r.fingerprint.map(|f| f.0.to_vec()));
        }
        let done = q.execute(conn).await?;
        Ok((done.rows_affected(), first.len()))
    }

    /// Reads the rows of `keys`; `for_update` locks them, in key order.
    pub(crate) async fn read_rows<'k>(
        &self,
        conn: &mut MySqlConnection,
        keys: impl ExactSizeIterator<Item = &'k RecordKey>,
        for_update: bool,
    ) -> Result<Rows, TxError> {
        let sql = self.sql.read_rows(keys.len(), for_update);
        let mut q = sqlx::query(&sql);
        for k in keys {
            q = q
                .bind(k.scope.as_str().as_bytes())
                .bind(k.key.as_str().as_bytes());
        }
        let rows = q.fetch_all(conn).await?;
        let mut now = None;
        let mut out = HashMap::with_capacity(rows.len());
        for row in rows {
            let raw: RawRecord = sqlx::FromRow::from_row(&row)?;
            let text = |col: &str| -> Result<String, TxError> {
                String::from_utf8(row.try_get::<Vec<u8>, _>(col)?)
                    .map_err(|_| StoreError::Corrupt(format!("{col} is not UTF-8")).into())
            };
            let k = (text("scope")?, text("idem_key")?);
            now = Some(row.try_get("now_ms")?);
            out.insert(k, raw.into_record()?);
        }
        Ok((out, now))
    }

    /// Writes back the rows a transition changed (locked by the caller), in one statement.
    pub(crate) async fn write_rows(
        &self,
        conn: &mut MySqlConnection,
        writes: HashMap<RowKey, Record>,
    ) -> Result<(), sqlx::Error> {
        if writes.is_empty() {
            return Ok(());
        }
        let sql = self.sql.write_rows(writes.len());
        let mut q = sqlx::query(&sql);
        for ((scope, key), rec) in writes {
            let row = RawRecord::from_record(&rec);
            q = q
                .bind(scope.into_bytes())
                .bind(key.into_bytes())
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
        q.execute(conn).await?;
        Ok(())
    }

    /// One round of a claim: answers what it can, returns the positions to try again
    /// (rows that appeared or vanished meanwhile).
    async fn claim_round(
        &self,
        reqs: &[ClaimRequest],
        todo: &[usize],
        out: &mut [Option<Claim>],
    ) -> Result<Vec<usize>, StoreError> {
        // Read first: a duplicate or redelivery is answered in this one round trip.
        let (rows, now) = retrying(|| async {
            let mut conn = self.pool.acquire().await?;
            self.read_rows(&mut conn, keys_at(reqs, todo), false).await
        })
        .await?;
        let (mut locked, mut missing) = (Vec::new(), Vec::new());
        for &i in todo {
            match (rows.get(&row_key(&reqs[i])), now) {
                (Some(rec), Some(now)) => match claim_next(Some(rec), &reqs[i], now) {
                    (claim, None) => out[i] = Some(claim),
                    (_, Some(_)) => locked.push(i),
                },
                _ => missing.push(i),
            }
        }
        let mut again = Vec::new();
        if !missing.is_empty() {
            // Several missing keys are inserted in one statement, all or none: a partial
            // insert cannot tell whose rows are whose, so it is rolled back and the keys are
            // inserted one by one, each telling whether it was new (as a single key is).
            let distinct: HashSet<RowKey> = missing.iter().map(|&i| row_key(&reqs[i])).collect();
            let all = distinct.len() > 1
                && retrying(|| async {
                    let mut tx = self.pool.begin().await?;
                    let (inserted, wanted) = self.insert_new(&mut tx, reqs, &missing).await?;
                    if inserted as usize == wanted {
                        tx.commit().await?;
                        Ok(true)
                    } else {
                        tx.rollback().await?;
                        Ok(false)
                    }
                })
                .await?;
            let mut owned = HashSet::new();
            for &i in &missing {
                let k = row_key(&reqs[i]);
                if owned.contains(&k) {
                    // A later occurrence of a key this claim inserted: it sees the claim.
                    locked.push(i);
                    continue;
                }
                let new = all
                    || retrying(|| async {
                        let mut conn = self.pool.acquire().await?;
                        Ok(self.insert_new(&mut conn, reqs, &[i]).await?.0 == 1)
                    })
                    .await?;
                if new {
                    owned.insert(k);
                    out[i] = Some(acquired_new());
                } else {
                    // Inserted by another consumer meanwhile: claim it as existing.
                    again.push(i);
                }
            }
        }
        if !locked.is_empty() {
            locked.sort_unstable();
            let (claims, vanished) = retrying(|| async {
                let mut tx = self.pool.begin().await?;
                let (rows, now) = self
                    .read_rows(&mut tx, keys_at(reqs, &locked), true)
                    .await?;
                let Some(now) = now else {
                    return Ok((vec![], locked.clone()));
                };
                let decided = decide_claims(reqs, &locked, rows, now);
                self.write_rows(&mut tx, decided.writes).await?;
                tx.commit().await?;
                Ok((decided.claims, decided.missing))
            })
            .await?;
            for (i, c) in claims {
                out[i] = Some(c);
            }
            again.extend(vanished);
        }
        again.sort_unstable();
        Ok(again)
    }

    /// Completes the positions `todo` of `items` in one transaction: locks their rows,
    /// applies the rule in Rust and writes the changed rows back in one statement.
    async fn complete_locked(
        &self,
        items: &[Completion<'_>],
        todo: &[usize],
    ) -> Result<Vec<(usize, Result<(), StoreError>)>, StoreError> {
        retrying(|| async {
            let mut tx = self.pool.begin().await?;
            let keys = todo.iter().map(|&i| items[i].key);
            let (rows, now) = self.read_rows(&mut tx, keys, true).await?;
            // No row at all: every completion lost its lease, and nothing is written.
            let decided = decide_completions(items, todo, rows, now.unwrap_or(0));
            self.write_rows(&mut tx, decided.writes).await?;
            tx.commit().await?;
            Ok(decided.answers)
        })
        .await
    }

    async fn owner_update(
        &self,
        sql: &str,
        key: &RecordKey,
        token: FencingToken,
    ) -> Result<u64, StoreError> {
        let done = sqlx::query(sql)
            .bind(key.scope.as_str().as_bytes())
            .bind(key.key.as_str().as_bytes())
            .bind(token.0 as i64)
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(done.rows_affected())
    }
}

/// The keys of the claims at `todo`.
fn keys_at<'a>(
    reqs: &'a [ClaimRequest],
    todo: &'a [usize],
) -> impl ExactSizeIterator<Item = &'a RecordKey> + 'a {
    todo.iter().map(|&i| &reqs[i].key)
}

fn acquired_new() -> Claim {
    Claim::Acquired {
        token: FencingToken(1),
        attempt: 1,
        takeover: false,
    }
}

#[async_trait]
impl Store for MySqlStore {
    async fn claim(&self, req: &ClaimRequest) -> Result<Claim, StoreError> {
        let mut claims = self.claim_batch(std::slice::from_ref(req)).await?;
        Ok(claims.remove(0))
    }

    async fn claim_batch(&self, reqs: &[ClaimRequest]) -> Result<Vec<Claim>, StoreError> {
        let mut out: Vec<Option<Claim>> = vec![None; reqs.len()];
        let mut todo: Vec<usize> = (0..reqs.len()).collect();
        // Under heavy contention on new keys a round may leave some keys to the next one.
        for _ in 0..=4 * MAX_RETRIES {
            if todo.is_empty() {
                break;
            }
            todo = self.claim_round(reqs, &todo, &mut out).await?;
        }
        out.into_iter()
            .map(|c| {
                c.ok_or_else(|| {
                    StoreError::unavailable(std::io::Error::other(
                        "keys kept changing while being claimed",
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
            .bind(result)
            .bind(duration_ms(retention))
            .bind(key.scope.as_str().as_bytes())
            .bind(key.key.as_str().as_bytes())
            .bind(token.0 as i64)
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        // FOUND_ROWS is on: a matched row counts even if unchanged.
        let consumed = done.rows_affected() == 1
            || sqlx::query(&self.sql.consumed_by)
                .bind(key.scope.as_str().as_bytes())
                .bind(key.key.as_str().as_bytes())
                .bind(token.0 as i64)
                .fetch_optional(&self.pool)
                .await
                .map_err(store_error)?
                .is_some();
        if consumed {
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
        if let [i] = todo[..] {
            // One conditional UPDATE beats a transaction of four statements.
            let c = &items[i];
            out[i] = match self.complete(c.key, c.token, c.result, c.retention).await {
                Err(e @ StoreError::LeaseLost { .. }) => Err(e),
                other => Ok(other?),
            };
            return Ok(out);
        }
        for chunk in todo.chunks(COMPLETIONS_PER_TX) {
            for (i, answer) in self.complete_locked(items, chunk).await? {
                out[i] = answer;
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
        // The new deadline is read back in the same transaction, under the row lock the
        // update took.
        let until = retrying(|| async {
            let mut tx = self.pool.begin().await?;
            let done = sqlx::query(&self.sql.extend)
                .bind(duration_ms(lease))
                .bind(duration_ms(lease))
                .bind(key.scope.as_str().as_bytes())
                .bind(key.key.as_str().as_bytes())
                .bind(token.0 as i64)
                .execute(&mut *tx)
                .await?;
            if done.rows_affected() != 1 {
                return Ok(None);
            }
            let until: i64 = sqlx::query_scalar(&self.sql.read_lease)
                .bind(key.scope.as_str().as_bytes())
                .bind(key.key.as_str().as_bytes())
                .bind(token.0 as i64)
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(Some(until))
        })
        .await?;
        until.ok_or_else(|| StoreError::LeaseLost { key: key.clone() })
    }

    async fn get(&self, key: &RecordKey) -> Result<Option<Record>, StoreError> {
        sqlx::query_as::<_, RawRecord>(&self.sql.get)
            .bind(key.scope.as_str().as_bytes())
            .bind(key.key.as_str().as_bytes())
            .fetch_optional(&self.pool)
            .await
            .map_err(store_error)?
            .map(RawRecord::into_record)
            .transpose()
    }

    async fn purge(&self, scope: &Scope) -> Result<u64, StoreError> {
        let done = sqlx::query(&self.sql.purge)
            .bind(scope.as_str().as_bytes())
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(done.rows_affected())
    }

    async fn stats(&self, scope: &Scope) -> Result<ScopeStats, StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(&self.sql.stats)
            .bind(scope.as_str().as_bytes())
            .fetch_all(&self.pool)
            .await
            .map_err(store_error)?;
        idemq_sql::scope_stats(rows)
    }
}
