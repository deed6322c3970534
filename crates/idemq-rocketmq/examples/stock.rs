//! An order service sends "reduce stock" messages to RocketMQ with the order id as the
//! message key; the stock service consumes them and decrements stock in MariaDB, writing a
//! stock-flow row, with the dedup row in the same transaction. The order service also sends
//! one order again, as an application resend does: a new message with a new unique id
//! (`UNIQ_KEY`) but the same business key, so the consumer, keyed by the business key,
//! applies it once. A broker redelivery changes nothing either.
//!
//! Each run uses a topic, a consumer group and a dedup scope of its own, so it never sees
//! the messages or the records of an earlier run.
//!
//! Needs a RocketMQ name server on 127.0.0.1:9876 with its broker (`scripts/rocketmq start`)
//! and MariaDB on 127.0.0.1:3306 (root, database `test`):
//!
//! ```text
//! cargo run -p idemq-rocketmq --example stock
//! ```

use std::sync::Arc;
use std::time::Duration;

use idemq_consumer::in_tx;
use idemq_core::adapter::{HandlerFuture, RetryPolicy};
use idemq_core::{EngineConfig, Scope, TxEngine};
use idemq_mysql::MySqlStore;
use idemq_rocketmq::{keys, Client, Outgoing, Producer, RmqDelivery, RmqSource};
use sqlx::MySqlConnection;

const NAMESRV: &str = "127.0.0.1:9876";
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

    /// A body that does not parse is poison: it goes to the dead-letter topic, never to a
    /// retry.
    fn decode(d: &RmqDelivery) -> Result<Self, String> {
        let text = std::str::from_utf8(d.body()).map_err(|e| e.to_string())?;
        match text.split(',').collect::<Vec<_>>()[..] {
            [order_id, sku, qty] => Ok(Self {
                order_id: order_id.into(),
                sku: sku.into(),
                qty: qty.parse().map_err(|e| format!("bad quantity: {e}"))?,
            }),
            _ => Err(format!("not ORDER,SKU,QTY: {text:?}")),
        }
    }

    /// The order as the order service sends it: the order id is the message key.
    fn outgoing(&self, topic: &str) -> Outgoing {
        Outgoing::new(topic, self.encode()).key(self.order_id.clone())
    }
}

/// The business writes, on the transaction that also holds the dedup row.
fn reduce(msg: ReduceStock, tx: &mut MySqlConnection) -> HandlerFuture<'_, String, sqlx::Error> {
    Box::pin(async move {
        sqlx::query("UPDATE example_rmq_stock SET qty = qty - ? WHERE sku = ? AND qty >= ?")
            .bind(msg.qty)
            .bind(&msg.sku)
            .bind(msg.qty)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO example_rmq_stock_flow (order_id, sku, delta) VALUES (?, ?, ?)")
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
    sqlx::query("DROP TABLE IF EXISTS example_rmq_stock, example_rmq_stock_flow")
        .execute(db)
        .await?;
    sqlx::query(
        "CREATE TABLE example_rmq_stock (sku VARCHAR(32) PRIMARY KEY, qty BIGINT NOT NULL)",
    )
    .execute(db)
    .await?;
    sqlx::query(
        "CREATE TABLE example_rmq_stock_flow (id BIGINT AUTO_INCREMENT PRIMARY KEY, \
         order_id VARCHAR(64) NOT NULL, sku VARCHAR(32) NOT NULL, delta BIGINT NOT NULL)",
    )
    .execute(db)
    .await?;
    sqlx::query("INSERT INTO example_rmq_stock VALUES ('apple', 100), ('pear', 100)")
        .execute(db)
        .await?;

    let run = idemq_core::time::now_ms();
    let topic = format!("example-stock-{run}");
    let group = format!("stock-service-{run}");
    let scope = Scope::new(format!("stock-service/run-{run}"))?;
    // RocketMQ delays a retry by one of its delay levels, the shortest being 1 s.
    let policy = RetryPolicy {
        initial_interval: Duration::from_secs(1),
        redeliver_after: Duration::from_secs(1),
        ..RetryPolicy::default()
    };

    // The order service: ten orders, then order-3 sent again as a new message.
    let client = Client::new(NAMESRV)?;
    let producer = Producer::start(&client, "order-service").await?;
    producer.create_topic(&topic, 4).await?;
    let orders: Vec<ReduceStock> = (1..=10)
        .map(|i| ReduceStock {
            order_id: format!("order-{i}"),
            sku: if i % 2 == 0 { "apple" } else { "pear" }.into(),
            qty: i,
        })
        .collect();
    let mut first_id = None;
    for order in &orders {
        let sent = producer.send(order.outgoing(&topic)).await?;
        if order.order_id == "order-3" {
            first_id = sent.msg_id;
        }
    }
    let resent = producer.send(orders[2].outgoing(&topic)).await?;
    producer.shutdown().await;
    println!(
        "sent 11 messages for 10 orders to {topic}; order-3 twice, unique ids {} and {}",
        first_id.unwrap_or_default(),
        resent.msg_id.unwrap_or_default()
    );

    // The stock service, keyed by the business key: the engine is built from the store
    // whose transaction the handler writes through, so the claim, the stock change and the
    // record commit together.
    let engine = TxEngine::new(
        store.clone(),
        EngineConfig::new(scope),
        keys::business_key(),
    );
    let consumer = RmqSource::new(&client, &topic, &group, policy)?
        .consumer()
        .concurrency(4)
        .spawn(in_tx(engine, ReduceStock::decode, reduce));
    let stats = consumer.stats().clone();
    let settled = tokio::time::timeout(
        Duration::from_secs(45),
        stats.wait_until(|s| s.acked() >= 11),
    )
    .await;
    consumer.shutdown().await;
    client.shutdown().await;
    if settled.is_err() {
        return Err(format!(
            "gave up after 45 s: {} received, {} processed, {} duplicates",
            stats.received.get(),
            stats.processed.get(),
            stats.duplicates.get()
        )
        .into());
    }
    println!(
        "consumed: {} processed, {} duplicate",
        stats.processed.get(),
        stats.duplicates.get()
    );

    let flows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM example_rmq_stock_flow")
        .fetch_one(db)
        .await?;
    let stock: Vec<(String, i64)> =
        sqlx::query_as("SELECT sku, qty FROM example_rmq_stock ORDER BY sku")
            .fetch_all(db)
            .await?;
    println!("stock-flow rows: {flows} (one per order)");
    for (sku, qty) in &stock {
        let ordered: i64 = orders.iter().filter(|o| &o.sku == sku).map(|o| o.qty).sum();
        println!("{sku}: {qty} (100 - {ordered}: each order applied once)");
    }
    let expected = [("apple", 70), ("pear", 75)];
    if flows != 10 || stock.iter().map(|(s, q)| (s.as_str(), *q)).ne(expected) {
        return Err("an order was not applied exactly once".into());
    }
    Ok(())
}
