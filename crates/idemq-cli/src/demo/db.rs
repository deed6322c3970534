//! The business database: the stock tables and the handler's writes, on SQLite,
//! MySQL/MariaDB or PostgreSQL.
//!
//! Every statement is written once with `?` placeholders and [`BusinessDb::sql`] turns them
//! into `$1, $2, ...` for PostgreSQL; the few statements whose syntax differs (the schema,
//! insert-if-missing, `RETURNING`) are spelled out per dialect. The flow table deliberately
//! has no unique key on the order, so a double apply shows up in
//! [`check`](super::check) instead of being hidden by the database.

use std::str::FromStr;
use std::time::Duration;

use idemq_core::adapter::HandlerFuture;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlPool, MySqlPoolOptions};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::Executor;

use super::story::{HandlerError, Order, INITIAL_STOCK, SKUS};
use super::Topic;
use crate::url::DbUrl;

/// The business tables on SQLite, created if missing. Every row carries its topic, so runs
/// on different topics share one database without seeing each other.
const SQLITE_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS demo_orders (
    topic    TEXT    NOT NULL,
    order_id TEXT    NOT NULL,
    sku      TEXT    NOT NULL,
    qty      INTEGER NOT NULL,
    PRIMARY KEY (topic, order_id)
);
CREATE TABLE IF NOT EXISTS demo_stock (
    topic   TEXT    NOT NULL,
    sku     TEXT    NOT NULL,
    initial INTEGER NOT NULL,
    qty     INTEGER NOT NULL,
    PRIMARY KEY (topic, sku)
);
CREATE TABLE IF NOT EXISTS demo_stock_flow (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    topic      TEXT    NOT NULL,
    order_id   TEXT    NOT NULL,
    sku        TEXT    NOT NULL,
    delta      INTEGER NOT NULL,
    applied_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS demo_stock_flow_by_order ON demo_stock_flow (topic, order_id);
";

/// The same tables on MySQL and MariaDB (topics are at most 64 characters).
const MYSQL_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS demo_orders (
    topic    VARCHAR(64) NOT NULL,
    order_id VARCHAR(64) NOT NULL,
    sku      VARCHAR(64) NOT NULL,
    qty      BIGINT      NOT NULL,
    PRIMARY KEY (topic, order_id)
) ENGINE = InnoDB;
CREATE TABLE IF NOT EXISTS demo_stock (
    topic   VARCHAR(64) NOT NULL,
    sku     VARCHAR(64) NOT NULL,
    initial BIGINT      NOT NULL,
    qty     BIGINT      NOT NULL,
    PRIMARY KEY (topic, sku)
) ENGINE = InnoDB;
CREATE TABLE IF NOT EXISTS demo_stock_flow (
    id         BIGINT      NOT NULL AUTO_INCREMENT PRIMARY KEY,
    topic      VARCHAR(64) NOT NULL,
    order_id   VARCHAR(64) NOT NULL,
    sku        VARCHAR(64) NOT NULL,
    delta      BIGINT      NOT NULL,
    applied_at BIGINT      NOT NULL,
    INDEX demo_stock_flow_by_order (topic, order_id)
) ENGINE = InnoDB;
";

/// The same tables on PostgreSQL.
const POSTGRES_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS demo_orders (
    topic    TEXT   NOT NULL,
    order_id TEXT   NOT NULL,
    sku      TEXT   NOT NULL,
    qty      BIGINT NOT NULL,
    PRIMARY KEY (topic, order_id)
);
CREATE TABLE IF NOT EXISTS demo_stock (
    topic   TEXT   NOT NULL,
    sku     TEXT   NOT NULL,
    initial BIGINT NOT NULL,
    qty     BIGINT NOT NULL,
    PRIMARY KEY (topic, sku)
);
CREATE TABLE IF NOT EXISTS demo_stock_flow (
    id         BIGSERIAL PRIMARY KEY,
    topic      TEXT   NOT NULL,
    order_id   TEXT   NOT NULL,
    sku        TEXT   NOT NULL,
    delta      BIGINT NOT NULL,
    applied_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS demo_stock_flow_by_order ON demo_stock_flow (topic, order_id);
";

/// Serialises concurrent schema creation on PostgreSQL, where two `CREATE TABLE IF NOT
/// EXISTS` racing each other can fail on the catalog's unique keys. ("idemqdmo" in ASCII.)
const PG_SCHEMA_LOCK: i64 = 0x6964_656d_7164_6d6f;

const INSERT_FLOW: &str = "INSERT INTO demo_stock_flow (topic, order_id, sku, delta, applied_at) \
                           VALUES (?, ?, ?, ?, ?)";

/// How long SQLite writers wait for each other's write lock.
const SQLITE_BUSY: Duration = Duration::from_secs(30);

/// Runs `$body` with `$pool` bound to whichever pool `$db` holds: one text, monomorphised
/// for each database.
macro_rules! on_pool {
    ($db:expr, |$pool:ident| $body:expr) => {
        match $db {
            $crate::demo::db::BusinessDb::Sqlite($pool) => $body,
            $crate::demo::db::BusinessDb::Mysql($pool) => $body,
            $crate::demo::db::BusinessDb::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_pool;

/// The business database, one pool of whichever kind `--db` names. Cheap to clone.
#[derive(Debug, Clone)]
pub enum BusinessDb {
    /// `sqlite://FILE`.
    Sqlite(SqlitePool),
    /// `mysql://` or `mariadb://`; sessions run at `READ COMMITTED`, as the MySQL store asks
    /// of transactions it joins.
    Mysql(MySqlPool),
    /// `postgres://`.
    Postgres(PgPool),
}

impl BusinessDb {
    /// Opens (for SQLite: creating the file if missing) the database with room for
    /// `connections` concurrent users.
    pub async fn open(url: &DbUrl, connections: u32) -> Result<Self, sqlx::Error> {
        Self::connect(url, connections.max(1), true).await
    }

    /// Opens a database that must exist already (for `check`).
    pub async fn open_existing(url: &DbUrl) -> Result<Self, sqlx::Error> {
        Self::connect(url, 1, false).await
    }

    async fn connect(url: &DbUrl, connections: u32, create: bool) -> Result<Self, sqlx::Error> {
        Ok(match url {
            DbUrl::Sqlite(path) => {
                let options = SqliteConnectOptions::from_str("sqlite:")?
                    .filename(path)
                    .create_if_missing(create)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(SQLITE_BUSY);
                let pool = SqlitePoolOptions::new()
                    .max_connections(connections)
                    .acquire_timeout(SQLITE_BUSY)
                    .connect_with(options)
                    .await?;
                Self::Sqlite(pool)
            }
            DbUrl::Mysql(_) => {
                let options = MySqlConnectOptions::from_str(&url.connect_url())?;
                let pool = MySqlPoolOptions::new()
                    .max_connections(connections)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            conn.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
                                .await
                                .map(drop)
                        })
                    })
                    .connect_with(options)
                    .await?;
                Self::Mysql(pool)
            }
            DbUrl::Postgres(_) => {
                let options = PgConnectOptions::from_str(&url.connect_url())?;
                let pool = PgPoolOptions::new()
                    .max_connections(connections)
                    .connect_with(options)
                    .await?;
                Self::Postgres(pool)
            }
        })
    }

    /// The SQLite pool, for tests that plant rows in an SQLite business file.
    ///
    /// # Panics
    ///
    /// On a MySQL or PostgreSQL database: match on the variants instead.
    pub fn pool(&self) -> &SqlitePool {
        match self {
            Self::Sqlite(pool) => pool,
            other => panic!("BusinessDb::pool is SQLite's; this is {}", other.dialect()),
        }
    }

    /// The database's name, for messages.
    pub fn dialect(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "SQLite",
            Self::Mysql(_) => "MySQL",
            Self::Postgres(_) => "PostgreSQL",
        }
    }

    /// `q` with its `?` placeholders in this database's style (`$1, $2, ...` on PostgreSQL).
    /// The demo's statements have no `?` inside literals.
    pub fn sql(&self, q: &str) -> String {
        match self {
            Self::Postgres(_) => postgres_placeholders(q),
            Self::Sqlite(_) | Self::Mysql(_) => q.to_owned(),
        }
    }

    /// The type a `CAST(... AS _)` to a 64-bit integer names (sums are decimals on MySQL
    /// and PostgreSQL).
    pub fn integer_type(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "INTEGER",
            Self::Mysql(_) => "SIGNED",
            Self::Postgres(_) => "BIGINT",
        }
    }

    /// Closes the pool.
    pub async fn close(&self) {
        on_pool!(self, |pool| pool.close().await)
    }

    /// Creates the business tables if they are missing.
    pub async fn create_schema(&self) -> Result<(), sqlx::Error> {
        match self {
            Self::Sqlite(pool) => sqlx::raw_sql(SQLITE_SCHEMA).execute(pool).await.map(drop),
            Self::Mysql(pool) => sqlx::raw_sql(MYSQL_SCHEMA).execute(pool).await.map(drop),
            Self::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(PG_SCHEMA_LOCK)
                    .execute(&mut *tx)
                    .await?;
                sqlx::raw_sql(POSTGRES_SCHEMA).execute(&mut *tx).await?;
                tx.commit().await
            }
        }
    }

    /// Records the orders of a topic and gives each SKU its initial stock, in one
    /// transaction. Orders already placed are kept as they are, so placing again is harmless.
    pub async fn place_orders(&self, topic: &Topic, orders: &[Order]) -> Result<(), sqlx::Error> {
        self.place(topic, orders).await
    }

    /// Gives each SKU of the topic its initial stock, unless it has a stock row already.
    pub async fn place_stock(&self, topic: &Topic) -> Result<(), sqlx::Error> {
        self.place(topic, &[]).await
    }

    async fn place(&self, topic: &Topic, orders: &[Order]) -> Result<(), sqlx::Error> {
        let (stock, order) = match self {
            Self::Sqlite(_) => (
                "INSERT OR IGNORE INTO demo_stock (topic, sku, initial, qty) VALUES (?, ?, ?, ?)",
                "INSERT OR IGNORE INTO demo_orders (topic, order_id, sku, qty) VALUES (?, ?, ?, ?)",
            ),
            Self::Mysql(_) => (
                "INSERT IGNORE INTO demo_stock (topic, sku, initial, qty) VALUES (?, ?, ?, ?)",
                "INSERT IGNORE INTO demo_orders (topic, order_id, sku, qty) VALUES (?, ?, ?, ?)",
            ),
            Self::Postgres(_) => (
                "INSERT INTO demo_stock (topic, sku, initial, qty) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT DO NOTHING",
                "INSERT INTO demo_orders (topic, order_id, sku, qty) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT DO NOTHING",
            ),
        };
        on_pool!(self, |pool| {
            let mut tx = match self {
                // IMMEDIATE takes SQLite's write lock up front, so concurrent writers queue on
                // the busy timeout instead of failing to upgrade a read lock.
                Self::Sqlite(_) => pool.begin_with("BEGIN IMMEDIATE").await?,
                _ => pool.begin().await?,
            };
            for sku in 0..SKUS {
                sqlx::query(stock)
                    .bind(topic.as_str())
                    .bind(format!("sku-{sku}"))
                    .bind(INITIAL_STOCK)
                    .bind(INITIAL_STOCK)
                    .execute(&mut *tx)
                    .await?;
            }
            for o in orders {
                sqlx::query(order)
                    .bind(topic.as_str())
                    .bind(&o.order_id)
                    .bind(&o.sku)
                    .bind(o.qty)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await
        })
    }

    /// The handler with its own transaction (the path of a store outside this database):
    /// reduces the order's stock and writes its flow row, then commits. Returns what is
    /// stored with the idempotency record.
    ///
    /// `crash_before_commit` makes it fail after writing, before the commit, so the
    /// transaction rolls back; the caller turns that into an error or a crash. A crash
    /// between this commit and the store's `complete` could apply twice with a store
    /// outside this database, and that window is the one the engine cannot close on its
    /// own: `--store same` closes it, by running [`StockWriter::reduce`] in the store's
    /// transaction instead.
    pub async fn reduce_stock(
        &self,
        topic: &Topic,
        order: &Order,
        crash_before_commit: Option<HandlerError>,
    ) -> Result<String, HandlerError> {
        on_pool!(self, |pool| {
            let mut tx = match self {
                Self::Sqlite(_) => pool.begin_with("BEGIN IMMEDIATE").await?,
                _ => pool.begin().await?,
            };
            let left = (*tx).reduce(topic, order).await?;
            if let Some(e) = crash_before_commit {
                // Dropping the transaction rolls it back, as the database does for a dead
                // client.
                return Err(e);
            }
            tx.commit().await?;
            Ok(receipt(order, left))
        })
    }
}

/// What the handler stores with the idempotency record: the stock it left.
pub fn receipt(order: &Order, left: i64) -> String {
    format!("{} left {left}", order.sku)
}

/// A connection the handler writes through, inside whatever transaction it is in: its own
/// ([`BusinessDb::reduce_stock`]) or the idempotency store's (`--store same`).
pub trait StockWriter: Send {
    /// Decrements the order's SKU and inserts its flow row; returns the stock left.
    fn reduce<'c>(
        &'c mut self,
        topic: &'c Topic,
        order: &'c Order,
    ) -> HandlerFuture<'c, i64, HandlerError>;
}

impl StockWriter for SqliteConnection {
    fn reduce<'c>(
        &'c mut self,
        topic: &'c Topic,
        order: &'c Order,
    ) -> HandlerFuture<'c, i64, HandlerError> {
        Box::pin(async move {
            let left: i64 = sqlx::query_scalar(
                "UPDATE demo_stock SET qty = qty - ? WHERE topic = ? AND sku = ? RETURNING qty",
            )
            .bind(order.qty)
            .bind(topic.as_str())
            .bind(&order.sku)
            .fetch_optional(&mut *self)
            .await?
            .ok_or_else(|| HandlerError::UnknownSku(order.sku.clone()))?;
            flow_row(INSERT_FLOW, topic, order)
                .execute(&mut *self)
                .await?;
            Ok(left)
        })
    }
}

impl StockWriter for MySqlConnection {
    fn reduce<'c>(
        &'c mut self,
        topic: &'c Topic,
        order: &'c Order,
    ) -> HandlerFuture<'c, i64, HandlerError> {
        Box::pin(async move {
            // No UPDATE ... RETURNING here: the row is locked by the update, so the read
            // that follows sees this transaction's value.
            let updated =
                sqlx::query("UPDATE demo_stock SET qty = qty - ? WHERE topic = ? AND sku = ?")
                    .bind(order.qty)
                    .bind(topic.as_str())
                    .bind(&order.sku)
                    .execute(&mut *self)
                    .await?;
            if updated.rows_affected() == 0 {
                return Err(HandlerError::UnknownSku(order.sku.clone()));
            }
            let left: i64 =
                sqlx::query_scalar("SELECT qty FROM demo_stock WHERE topic = ? AND sku = ?")
                    .bind(topic.as_str())
                    .bind(&order.sku)
                    .fetch_one(&mut *self)
                    .await?;
            flow_row(INSERT_FLOW, topic, order)
                .execute(&mut *self)
                .await?;
            Ok(left)
        })
    }
}

impl StockWriter for PgConnection {
    fn reduce<'c>(
        &'c mut self,
        topic: &'c Topic,
        order: &'c Order,
    ) -> HandlerFuture<'c, i64, HandlerError> {
        Box::pin(async move {
            let left: i64 = sqlx::query_scalar(
                "UPDATE demo_stock SET qty = qty - $1 WHERE topic = $2 AND sku = $3 \
                 RETURNING qty",
            )
            .bind(order.qty)
            .bind(topic.as_str())
            .bind(&order.sku)
            .fetch_optional(&mut *self)
            .await?
            .ok_or_else(|| HandlerError::UnknownSku(order.sku.clone()))?;
            let insert = postgres_placeholders(INSERT_FLOW);
            flow_row(&insert, topic, order).execute(&mut *self).await?;
            Ok(left)
        })
    }
}

/// The flow row of an order, bound to [`INSERT_FLOW`] (in the database's placeholders).
fn flow_row<'q, DB: sqlx::Database>(
    sql: &'q str,
    topic: &'q Topic,
    order: &'q Order,
) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>
where
    &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    sqlx::query(sql)
        .bind(topic.as_str())
        .bind(order.order_id.as_str())
        .bind(order.sku.as_str())
        .bind(-order.qty)
        .bind(idemq_core::time::now_ms())
}

/// `?` → `$1, $2, ...`.
fn postgres_placeholders(q: &str) -> String {
    let mut out = String::with_capacity(q.len() + 8);
    let mut n = 0;
    for c in q.chars() {
        if c == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_for_postgres() {
        assert_eq!(
            postgres_placeholders("SELECT a FROM t WHERE x = ? AND y = ?"),
            "SELECT a FROM t WHERE x = $1 AND y = $2"
        );
        assert_eq!(postgres_placeholders(INSERT_FLOW).matches('$').count(), 5);
    }
}
