//! The verdict, from the business database alone: every order of the topic has exactly one
//! stock-flow row, no flow row belongs to an unknown order, and each SKU's stock equals its
//! initial stock less what its orders (and its flow rows) took.

use super::db::{on_pool, BusinessDb};
use super::{DemoError, Topic};

/// One SKU whose stock does not add up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockMismatch {
    /// The SKU.
    pub sku: String,
    /// The stock now.
    pub actual: i64,
    /// Initial stock less every order's quantity: what exactly-once gives.
    pub expected: i64,
    /// Initial stock plus every flow row's delta: what the flow rows account for.
    pub by_flow: i64,
}

/// What the check found for one topic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Orders placed on the topic.
    pub orders: u64,
    /// Stock-flow rows of the topic.
    pub flow_rows: u64,
    /// Orders without a flow row.
    pub missing: Vec<String>,
    /// Orders with more than one flow row, and how many they have.
    pub doubled: Vec<(String, i64)>,
    /// Flow rows whose order was never placed.
    pub unknown: Vec<String>,
    /// SKUs whose stock does not add up.
    pub stock: Vec<StockMismatch>,
}

impl CheckReport {
    /// How many violations: one per missing, doubled or unknown order, and one per SKU
    /// whose stock does not add up.
    pub fn violations(&self) -> u64 {
        (self.missing.len() + self.doubled.len() + self.unknown.len() + self.stock.len()) as u64
    }
}

/// Checks the topic's rows. A topic without orders is an error, so a mistyped `--topic`
/// cannot pass.
pub async fn check(db: &BusinessDb, topic: &Topic) -> Result<CheckReport, DemoError> {
    let t = topic.as_str();
    let q_orders = db.sql("SELECT COUNT(*) FROM demo_orders WHERE topic = ?");
    let orders: i64 = on_pool!(db, |pool| sqlx::query_scalar(&q_orders)
        .bind(t)
        .fetch_one(pool)
        .await?);
    if orders == 0 {
        return Err(DemoError::NoOrders(t.to_owned()));
    }
    let q_flow = db.sql("SELECT COUNT(*) FROM demo_stock_flow WHERE topic = ?");
    let flow_rows: i64 = on_pool!(db, |pool| sqlx::query_scalar(&q_flow)
        .bind(t)
        .fetch_one(pool)
        .await?);
    let q_missing = db.sql(
        "SELECT o.order_id FROM demo_orders o WHERE o.topic = ? AND NOT EXISTS \
         (SELECT 1 FROM demo_stock_flow f WHERE f.topic = o.topic AND f.order_id = o.order_id) \
         ORDER BY o.order_id",
    );
    let missing: Vec<String> = on_pool!(db, |pool| sqlx::query_scalar(&q_missing)
        .bind(t)
        .fetch_all(pool)
        .await?);
    let q_doubled = db.sql(
        "SELECT order_id, COUNT(*) FROM demo_stock_flow WHERE topic = ? \
         GROUP BY order_id HAVING COUNT(*) > 1 ORDER BY order_id",
    );
    let doubled: Vec<(String, i64)> = on_pool!(db, |pool| sqlx::query_as(&q_doubled)
        .bind(t)
        .fetch_all(pool)
        .await?);
    let q_unknown = db.sql(
        "SELECT DISTINCT f.order_id FROM demo_stock_flow f WHERE f.topic = ? AND NOT EXISTS \
         (SELECT 1 FROM demo_orders o WHERE o.topic = f.topic AND o.order_id = f.order_id) \
         ORDER BY f.order_id",
    );
    let unknown: Vec<String> = on_pool!(db, |pool| sqlx::query_scalar(&q_unknown)
        .bind(t)
        .fetch_all(pool)
        .await?);
    // Sums are decimals on MySQL and PostgreSQL: cast them back to 64-bit integers.
    let int = db.integer_type();
    let q_skus = db.sql(&format!(
        "SELECT s.sku, s.qty, \
           s.initial - CAST(COALESCE((SELECT SUM(o.qty) FROM demo_orders o \
                                      WHERE o.topic = s.topic AND o.sku = s.sku), 0) AS {int}), \
           s.initial + CAST(COALESCE((SELECT SUM(f.delta) FROM demo_stock_flow f \
                                      WHERE f.topic = s.topic AND f.sku = s.sku), 0) AS {int}) \
         FROM demo_stock s WHERE s.topic = ? ORDER BY s.sku"
    ));
    let skus: Vec<(String, i64, i64, i64)> = on_pool!(db, |pool| sqlx::query_as(&q_skus)
        .bind(t)
        .fetch_all(pool)
        .await?);
    let stock = skus
        .into_iter()
        .filter(|(_, actual, expected, by_flow)| actual != expected || actual != by_flow)
        .map(|(sku, actual, expected, by_flow)| StockMismatch {
            sku,
            actual,
            expected,
            by_flow,
        })
        .collect();
    Ok(CheckReport {
        orders: orders as u64,
        flow_rows: flow_rows as u64,
        missing,
        doubled,
        unknown,
        stock,
    })
}
