//! An order service publishes "reduce stock" messages; the stock service consumes them and
//! decrements stock in MariaDB, writing a stock-flow row, with the dedup row in the same
//! transaction. Duplicates (a producer retry, a redelivery) change nothing.
//!
//! Needs RabbitMQ on 127.0.0.1:5672 and MariaDB on 127.0.0.1:3306 (root, database `test`):
//!
//! ```text
//! cargo run -p idemq-rabbitmq --example stock
//! ```

use std::sync::Arc;
use std::time::Duration;

use idemq_consumer::in_tx;
use idemq_core::adapter::{HandlerFuture, RetryPolicy};
use idemq_core::{EngineConfig, KeyStrategy, Scope, TxEngine};
use idemq_mysql::MySqlStore;
use idemq_rabbitmq::{AmqpDelivery, AmqpSource, Outgoing, Publisher, Topology};
use sqlx::MySqlConnection;

const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const MYSQL: &str = "mysql://root@127.0.0.1:3306/test";

/// The message body: `ORDER_ID,SKU,QTY`.
struct ReduceStock {
    order_id: String,
    sku: String,
    qty: i64,
}

impl ReduceStock {
    fn encode(&self) -> String {
        format!("{},{},{}", self.order_id, self.sku, self.qty)
    }

    /// A body that does not parse is poison: it goes to the DLQ, never to a retry.
    fn decode(d: &AmqpDelivery) -> Result<Self, String> {
        let text = std::str::from_utf8(d.data()).map_err(|e| e.to_string())?;
        match text.split(',').collect::<Vec<_>>()[..] {
            [order_id, sku, qty] => Ok(Self {
                order_id: order_id.into(),
                sku: sku.into(),
                qty: qty.parse().map_err(|e| format!("bad quantity: {e}"))?,
            }),
            _ => Err(format!("not ORDER,SKU,QTY: {text:?}")),
        }
    }
}

/// The business writes, on the transaction that also holds the dedup row.
fn reduce(msg: ReduceStock, tx: &mut MySqlConnection) -> HandlerFuture<'_, String, sqlx::Error> {
    Box::pin(async move {
        sqlx::query("UPDATE example_stock SET qty = qty - ? WHERE sku = ? AND qty >= ?")
            .bind(msg.qty)
            .bind(&msg.sku)
            .bind(msg.qty)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO example_stock_flow (order_id, sku, delta) VALUES (?, ?, ?)")
            .bind(&msg.order_id)
            .bind(&msg.sku)
            .bind(-msg.qty)
            .execute(&mut *tx)
            .await?;
        Ok(format!("{} -{}", msg.sku, msg.qty))
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let store = Arc::new(MySqlStore::connect(MYSQL).await?);
    let db = store.pool();
    sqlx::query("DROP TABLE IF EXISTS example_stock, example_stock_flow")
        .execute(db)
        .await?;
    sqlx::query("CREATE TABLE example_stock (sku VARCHAR(32) PRIMARY KEY, qty BIGINT NOT NULL)")
        .execute(db)
        .await?;
    sqlx::query(
        "CREATE TABLE example_stock_flow (id BIGINT AUTO_INCREMENT PRIMARY KEY, \
         order_id VARCHAR(64) NOT NULL, sku VARCHAR(32) NOT NULL, delta BIGINT NOT NULL)",
    )
    .execute(db)
    .await?;
    sqlx::query("INSERT INTO example_stock VALUES ('apple', 100), ('pear', 100)")
        .execute(db)
        .await?;

    let policy = RetryPolicy {
        initial_interval: Duration::from_millis(500),
        redeliver_after: Duration::from_millis(200),
        ..RetryPolicy::default()
    };
    let topology = Topology::new("example.stock", policy)?;
    // A fresh scope per run, so this run's orders are not duplicates of the last run's.
    let scope = Scope::new(format!("stock-service/run-{}", idemq_core::time::now_ms()))?;

    // The order service: ten orders, and a producer retry that sends three of them again.
    let publisher = Publisher::connect(AMQP, &topology).await?;
    let orders: Vec<ReduceStock> = (1..=10)
        .map(|i| ReduceStock {
            order_id: format!("order-{i}"),
            sku: if i % 2 == 0 { "apple" } else { "pear" }.into(),
            qty: i,
        })
        .collect();
    let sends = orders.iter().chain(&orders[..3]);
    publisher
        .publish_all(sends.map(|o| Outgoing::new(o.encode()).key(o.order_id.clone())))
        .await?;
    println!("published 13 messages for 10 orders");

    // The stock service: the engine is built from the store whose transaction the handler
    // writes through, so the claim, the stock change and the record commit together.
    let engine = TxEngine::new(
        store.clone(),
        EngineConfig::new(scope),
        KeyStrategy::MessageId,
    );
    let consumer = AmqpSource::new(AMQP, topology)
        .prefetch(16)
        .consumer()
        .concurrency(4)
        .spawn(in_tx(engine, ReduceStock::decode, reduce));
    consumer.stats().wait_until(|s| s.acked() >= 13).await;
    consumer.shutdown().await;

    let flows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM example_stock_flow")
        .fetch_one(db)
        .await?;
    let stock: Vec<(String, i64)> =
        sqlx::query_as("SELECT sku, qty FROM example_stock ORDER BY sku")
            .fetch_all(db)
            .await?;
    println!("stock-flow rows: {flows} (one per order)");
    for (sku, qty) in stock {
        println!("{sku}: {qty}");
    }
    Ok(())
}
