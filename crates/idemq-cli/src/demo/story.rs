//! The story: orders, the business schema, and the handler that reduces stock.
//!
//! The handler's effect is one SQLite transaction: decrement the SKU's stock and insert a
//! stock-flow row for the order. The flow table deliberately has no unique key on the
//! order, so a double apply shows up in [`check`](super::check) instead of being hidden
//! by the database.

use std::str::FromStr;
use std::time::Duration;

use bytes::Bytes;
use idemq_core::Message;
use serde::{Deserialize, Serialize};
use sqlx::sqlite::SqliteSynchronous;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

use super::Topic;
use crate::url::DbUrl;

/// How many SKUs the orders spread over.
pub const SKUS: u32 = 8;
/// The stock each SKU starts with.
pub const INITIAL_STOCK: i64 = 1_000_000;

/// The business tables, created if missing. Every row carries its topic, so runs on
/// different topics share one file without seeing each other.
const SCHEMA: &str = "
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

/// One order: reduce `sku` by `qty`. Its id is the business key of its message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// The order id, e.g. `order-000042`.
    pub order_id: String,
    /// The SKU whose stock the order reduces.
    pub sku: String,
    /// How many units.
    pub qty: i64,
}

impl Order {
    /// The `i`th order of every run: the same index always gives the same order.
    pub fn nth(i: u32) -> Self {
        Self {
            order_id: format!("order-{i:06}"),
            sku: format!("sku-{}", i % SKUS),
            qty: 1 + i64::from(i.wrapping_mul(7) % 5),
        }
    }

    /// The message payload: the order as JSON.
    pub fn encode(&self) -> Bytes {
        serde_json::to_vec(self)
            .expect("an order always serialises")
            .into()
    }

    /// Reads an order back from a payload.
    pub fn decode(payload: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(payload)
    }
}

/// The first `n` orders.
pub fn orders(n: u32) -> Vec<Order> {
    (0..n).map(Order::nth).collect()
}

/// The business key of a message: its order id. A producer retry that republishes an
/// order under a new message id still carries the same key.
pub fn order_key<M: Message>(msg: &M) -> Option<String> {
    Order::decode(msg.payload()).ok().map(|o| o.order_id)
}

/// What the fault injection asks of one handler run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Run normally and commit.
    None,
    /// Fail with an error after writing, so the transaction rolls back.
    Error,
    /// Die after writing but before the commit; the database discards the transaction.
    Crash,
}

/// Why the handler did not apply an order.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The payload is not an order.
    #[error("undecodable order: {0}")]
    Decode(#[from] serde_json::Error),
    /// The order names a SKU the topic has no stock row for.
    #[error("no stock row for {0}")]
    UnknownSku(String),
    /// An injected failure: a transient error of a dependency.
    #[error("injected failure: stock service timed out")]
    Injected,
    /// An injected crash before the commit; the consumer treats it as its own death.
    #[error("injected crash before commit")]
    Crashed,
    /// The business database failed.
    #[error("business database: {0}")]
    Db(#[from] sqlx::Error),
}

/// The business database.
#[derive(Debug, Clone)]
pub struct BusinessDb {
    pool: SqlitePool,
}

impl BusinessDb {
    /// Opens (creating if missing) the database with room for `connections` concurrent users.
    pub async fn open(url: &DbUrl, connections: u32) -> Result<Self, sqlx::Error> {
        Self::connect(url, connections, true).await
    }

    /// Opens a database that must exist already (for `check`).
    pub async fn open_existing(url: &DbUrl) -> Result<Self, sqlx::Error> {
        Self::connect(url, 1, false).await
    }

    async fn connect(url: &DbUrl, connections: u32, create: bool) -> Result<Self, sqlx::Error> {
        let options = SqliteConnectOptions::from_str("sqlite:")?
            .filename(url.path())
            .create_if_missing(create)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(30));
        let pool = SqlitePoolOptions::new()
            .max_connections(connections.max(1))
            .connect_with(options)
            .await?;
        Ok(Self { pool })
    }

    /// The connection pool, for checks and tests.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Creates the business tables if they are missing.
    pub async fn create_schema(&self) -> Result<(), sqlx::Error> {
        sqlx::raw_sql(SCHEMA).execute(&self.pool).await?;
        Ok(())
    }

    /// Records the orders of a topic and gives each SKU its initial stock, in one
    /// transaction. Orders already placed are kept as they are, so placing again is harmless.
    pub async fn place_orders(&self, topic: &Topic, orders: &[Order]) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        for sku in 0..SKUS {
            sqlx::query(
                "INSERT OR IGNORE INTO demo_stock (topic, sku, initial, qty) VALUES (?, ?, ?, ?)",
            )
            .bind(topic.as_str())
            .bind(format!("sku-{sku}"))
            .bind(INITIAL_STOCK)
            .bind(INITIAL_STOCK)
            .execute(&mut *tx)
            .await?;
        }
        for o in orders {
            sqlx::query(
                "INSERT OR IGNORE INTO demo_orders (topic, order_id, sku, qty) VALUES (?, ?, ?, ?)",
            )
            .bind(topic.as_str())
            .bind(&o.order_id)
            .bind(&o.sku)
            .bind(o.qty)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }

    /// The handler: reduces the order's stock and writes its flow row, in one transaction.
    /// Returns what is stored with the idempotency record (the stock left).
    ///
    /// `fault` injects an error or a crash *before* the commit: a crash between the commit
    /// and the store's `complete` could apply twice with a store outside this database, and
    /// that window is the one the engine cannot close on its own.
    pub async fn reduce_stock(
        &self,
        topic: &Topic,
        order: &Order,
        fault: Fault,
    ) -> Result<String, HandlerError> {
        // IMMEDIATE takes the write lock up front, so concurrent consumers queue on the
        // busy timeout instead of failing to upgrade a read lock.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let left: i64 = sqlx::query_scalar(
            "UPDATE demo_stock SET qty = qty - ? WHERE topic = ? AND sku = ? RETURNING qty",
        )
        .bind(order.qty)
        .bind(topic.as_str())
        .bind(&order.sku)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| HandlerError::UnknownSku(order.sku.clone()))?;
        sqlx::query(
            "INSERT INTO demo_stock_flow (topic, order_id, sku, delta, applied_at) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(topic.as_str())
        .bind(&order.order_id)
        .bind(&order.sku)
        .bind(-order.qty)
        .bind(idemq_core::time::now_ms())
        .execute(&mut *tx)
        .await?;
        match fault {
            // Dropping the transaction rolls it back, as the database does for a dead client.
            Fault::Error => return Err(HandlerError::Injected),
            Fault::Crash => return Err(HandlerError::Crashed),
            Fault::None => {}
        }
        tx.commit().await?;
        Ok(format!("{} left {left}", order.sku))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use idemq_core::Envelope;

    #[test]
    fn orders_are_stable_and_keyed_by_id() {
        assert_eq!(Order::nth(42), Order::nth(42));
        let o = Order::nth(9);
        assert_eq!(o.order_id, "order-000009");
        assert_eq!(Order::decode(&o.encode()).unwrap(), o);
        let msg = Envelope::new(o.encode()).with_message_id("retry-2");
        assert_eq!(order_key(&msg).as_deref(), Some("order-000009"));
        assert_eq!(order_key(&Envelope::new("not json")), None);
    }
}
