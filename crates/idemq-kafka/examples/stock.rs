//! An order service produces "reduce stock" records to Kafka with the order id as the record
//! key; the stock service, a consumer group member, decrements stock in MariaDB and writes a
//! stock-flow row, with the dedup row in the same transaction, and commits a partition's
//! offset only past records that are done. The order service sends one order twice, as a
//! producer retry after a lost acknowledgement does (a new message id, the same key): the
//! consumer, keyed by the record key, applies it once.
//!
//! Needs tansu (or any Kafka) on 127.0.0.1:9092 (`scripts/tansu start`) and MariaDB on
//! 127.0.0.1:3306 (root, database `test`):
//!
//! ```text
//! cargo run -p idemq-kafka --example stock
//! ```

use std::sync::Arc;
use std::time::Duration;

use idemq_consumer::in_tx;
use idemq_core::adapter::{HandlerFuture, RetryPolicy};
use idemq_core::{EngineConfig, Message, Scope, TxEngine};
use idemq_kafka::{admin, keys, KafkaDelivery, KafkaSource, Outgoing, Producer};
use idemq_mysql::MySqlStore;
use sqlx::MySqlConnection;

const KAFKA: &str = "127.0.0.1:9092";
const MYSQL: &str = "mysql://root@127.0.0.1:3306/test";

/// The record value: `SKU,QTY`; the key is the order id.
struct ReduceStock {
    order_id: String,
    sku: String,
    qty: i64,
}

impl ReduceStock {
    /// A value that does not parse is poison: dead-lettered at once, never retried.
    fn decode(d: &KafkaDelivery) -> Result<Self, String> {
        let order_id = d
            .key()
            .and_then(|k| std::str::from_utf8(k).ok())
            .ok_or("no order id in the record key")?;
        let text = std::str::from_utf8(d.payload()).map_err(|e| e.to_string())?;
        let (sku, qty) = text
            .split_once(',')
            .ok_or(format!("not SKU,QTY: {text:?}"))?;
        Ok(Self {
            order_id: order_id.into(),
            sku: sku.into(),
            qty: qty.parse().map_err(|e| format!("bad quantity: {e}"))?,
        })
    }
}

/// The business writes, on the transaction that also holds the dedup row.
fn reduce(msg: ReduceStock, tx: &mut MySqlConnection) -> HandlerFuture<'_, String, sqlx::Error> {
    Box::pin(async move {
        sqlx::query("UPDATE example_kafka_stock SET qty = qty - ? WHERE sku = ?")
            .bind(msg.qty)
            .bind(&msg.sku)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO example_kafka_flow (order_id, sku, delta) VALUES (?, ?, ?)")
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
    sqlx::query("DROP TABLE IF EXISTS example_kafka_stock, example_kafka_flow")
        .execute(db)
        .await?;
    sqlx::query(
        "CREATE TABLE example_kafka_stock (sku VARCHAR(32) PRIMARY KEY, qty BIGINT NOT NULL)",
    )
    .execute(db)
    .await?;
    sqlx::query(
        "CREATE TABLE example_kafka_flow (id BIGINT AUTO_INCREMENT PRIMARY KEY, \
         order_id VARCHAR(64) NOT NULL, sku VARCHAR(32) NOT NULL, delta BIGINT NOT NULL)",
    )
    .execute(db)
    .await?;
    sqlx::query("INSERT INTO example_kafka_stock VALUES ('apple', 100), ('pear', 100)")
        .execute(db)
        .await?;

    let run = idemq_core::time::now_ms();
    let topic = format!("example-stock-{run}");
    admin::create_topics(KAFKA, &[&topic], 4).await?;

    // The order service: ten orders, and order-3 once more under a new message id.
    let producer = Producer::new(KAFKA)?;
    for i in 1..=10_i64 {
        let sku = if i % 2 == 0 { "apple" } else { "pear" };
        producer
            .send(Outgoing::new(&topic, format!("{sku},{i}")).key(format!("order-{i}")))
            .await?;
    }
    producer
        .send(Outgoing::new(&topic, "pear,3").key("order-3"))
        .await?;
    println!("produced 11 records for 10 orders to {topic}; order-3 twice");

    let engine = TxEngine::new(
        store.clone(),
        EngineConfig::new(Scope::new(format!("stock-service/run-{run}"))?),
        keys::record_key(),
    );
    let consumer = KafkaSource::new(
        KAFKA,
        &topic,
        format!("stock-service-{run}"),
        RetryPolicy::default(),
    )?
    .consumer()
    .spawn(in_tx(engine, ReduceStock::decode, reduce));
    let stats = consumer.stats().clone();
    let settled = tokio::time::timeout(
        Duration::from_secs(60),
        stats.wait_until(|s| s.acked() >= 11),
    )
    .await;
    consumer.shutdown().await;
    settled.map_err(|_| "the records did not all settle within 60 s")?;
    println!(
        "consumed: {} processed, {} duplicate",
        stats.processed.get(),
        stats.duplicates.get()
    );
    let stock: Vec<(String, i64)> =
        sqlx::query_as("SELECT sku, qty FROM example_kafka_stock ORDER BY sku")
            .fetch_all(db)
            .await?;
    let flows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM example_kafka_flow")
        .fetch_one(db)
        .await?;
    println!("stock {stock:?}, {flows} flow rows (one per order)");
    if flows != 10 || stock != [("apple".to_string(), 70), ("pear".to_string(), 75)] {
        return Err("an order was not applied exactly once".into());
    }
    Ok(())
}
