//! The order/payment flow with RocketMQ transactional messages.
//!
//! The order service creates each order in its database and sends "order created" as a
//! half message: the order row and the transaction-log row commit in one local transaction,
//! then the message is committed, so the payment service hears of an order if and only if
//! it exists. One order is declined in its local transaction (its row and its message roll
//! back); one is sent again under the same transaction id, as a producer retry does, and
//! refused. Should the order service die between its commit and the broker's, the broker
//! checks back and any producer of the group answers from the log.
//!
//! The payment service charges each order once with the dedup consumer, its record in the
//! same MariaDB transaction as the payment row, so a second copy of a message (a check-back
//! after the commit delivers one) is skipped.
//!
//! Needs a RocketMQ name server on 127.0.0.1:9876 with its broker (`scripts/rocketmq start`)
//! and MariaDB on 127.0.0.1:3306 (root, database `test`):
//!
//! ```text
//! cargo run -p idemq-rocketmq --example order_payment
//! ```

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use idemq_consumer::in_tx;
use idemq_core::adapter::{HandlerFuture, RetryPolicy};
use idemq_core::{EngineConfig, Scope, TxEngine};
use idemq_mysql::{MySqlStore, MySqlTxLog};
use idemq_rocketmq::transaction::{TxConfig, TxError, TxProducer};
use idemq_rocketmq::{keys, Client, Outgoing, Producer, RmqDelivery, RmqSource};
use sqlx::MySqlConnection;

const NAMESRV: &str = "127.0.0.1:9876";
const MYSQL: &str = "mysql://root@127.0.0.1:3306/test";

/// An order: `ORDER_ID,CENTS`.
#[derive(Clone)]
struct Order {
    id: String,
    cents: i64,
}

impl Order {
    fn decode(d: &RmqDelivery) -> Result<Self, String> {
        let text = std::str::from_utf8(d.body()).map_err(|e| e.to_string())?;
        let (id, cents) = text
            .split_once(',')
            .ok_or(format!("not ORDER,CENTS: {text:?}"))?;
        Ok(Self {
            id: id.into(),
            cents: cents.parse().map_err(|e| format!("bad amount: {e}"))?,
        })
    }
}

/// The order service's local transaction: the order row; an order over 10,000 cents is
/// declined after its row was written, so the rollback takes the row with it.
fn create_order(
    order: Order,
) -> impl for<'c> FnOnce(&'c mut MySqlConnection) -> BoxFuture<'c, Result<(), String>> + Send {
    move |tx| {
        Box::pin(async move {
            sqlx::query("INSERT INTO example_orders (id, cents) VALUES (?, ?)")
                .bind(&order.id)
                .bind(order.cents)
                .execute(&mut *tx)
                .await
                .map_err(|e| e.to_string())?;
            if order.cents > 10_000 {
                return Err(format!("{}: card declined", order.id));
            }
            Ok(())
        })
    }
}

/// The payment service's business write, on the transaction that holds the dedup row.
fn charge(order: Order, tx: &mut MySqlConnection) -> HandlerFuture<'_, String, sqlx::Error> {
    Box::pin(async move {
        sqlx::query("INSERT INTO example_payments (order_id, cents) VALUES (?, ?)")
            .bind(&order.id)
            .bind(order.cents)
            .execute(&mut *tx)
            .await?;
        Ok(format!("charged {}", order.cents))
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let store = Arc::new(MySqlStore::connect(MYSQL).await?);
    let db = store.pool();
    sqlx::query("DROP TABLE IF EXISTS example_orders, example_payments")
        .execute(db)
        .await?;
    sqlx::query("CREATE TABLE example_orders (id VARCHAR(32) PRIMARY KEY, cents BIGINT NOT NULL)")
        .execute(db)
        .await?;
    sqlx::query(
        "CREATE TABLE example_payments (id BIGINT AUTO_INCREMENT PRIMARY KEY, \
         order_id VARCHAR(32) NOT NULL, cents BIGINT NOT NULL)",
    )
    .execute(db)
    .await?;
    let log = MySqlTxLog::new(db.clone(), "example_tx_log")?;
    log.migrate().await?;

    let run = idemq_core::time::now_ms();
    let topic = format!("example-orders-{run}");
    let client = Client::new(NAMESRV)?;
    let admin = Producer::start(&client, "example-admin").await?;
    admin.create_topic(&topic, 4).await?;
    admin.shutdown().await;

    // The order service.
    let orders = TxProducer::start(
        &client,
        &format!("order-service-{run}"),
        &[&topic],
        log,
        TxConfig::default(),
    )
    .await?;
    let placed: Vec<Order> = [1_200, 4_500, 990, 25_000, 3_100, 780]
        .into_iter()
        .enumerate()
        .map(|(i, cents)| Order {
            id: format!("order-{}-{run}", i + 1),
            cents,
        })
        .collect();
    let send = |o: &Order| {
        Outgoing::new(&topic, format!("{},{}", o.id, o.cents))
            .key(o.id.clone())
            .id(o.id.clone())
    };
    let mut committed = Vec::new();
    for order in &placed {
        match orders
            .send_in_transaction(send(order), create_order(order.clone()))
            .await
        {
            Ok(_) => committed.push(order.id.clone()),
            Err(TxError::Local(why)) => {
                println!("order service: {why}; order and message rolled back")
            }
            Err(e) => return Err(e.into()),
        }
    }
    // A producer retry of order 2: same transaction id, refused.
    match orders
        .send_in_transaction(send(&placed[1]), create_order(placed[1].clone()))
        .await
    {
        Err(TxError::Duplicate(id)) => {
            println!("order service: {id} sent again, refused: one transaction")
        }
        other => {
            return Err(format!("the retry was not refused: {:?}", other.map(|s| s.tx_id)).into())
        }
    }
    println!(
        "order service: {} orders committed, their messages committed",
        committed.len()
    );

    // The payment service, keyed by the business key (the order id).
    let engine = TxEngine::new(
        store.clone(),
        EngineConfig::new(Scope::new(format!("payment-service/run-{run}"))?),
        keys::business_key(),
    );
    let policy = RetryPolicy {
        initial_interval: Duration::from_secs(1),
        redeliver_after: Duration::from_secs(1),
        ..RetryPolicy::default()
    };
    let payments = RmqSource::new(&client, &topic, format!("payment-service-{run}"), policy)?
        .from_first(true)
        .consumer()
        .spawn(in_tx(engine, Order::decode, charge));
    let stats = payments.stats().clone();
    let all = committed.len() as u64;
    let paid = tokio::time::timeout(
        Duration::from_secs(60),
        stats.wait_until(|s| s.processed.get() >= all),
    )
    .await;
    // Stay a little for the copies the broker's check-backs deliver, to show them skipped.
    tokio::time::sleep(Duration::from_secs(5)).await;
    payments.shutdown().await;
    orders.shutdown().await;
    client.shutdown().await;
    paid.map_err(|_| "payments did not arrive within 60 s")?;
    println!(
        "payment service: {} charged, {} duplicate copies skipped; check-backs answered {:?}",
        stats.processed.get(),
        stats.duplicates.get(),
        orders.checks()
    );

    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT order_id, COUNT(*) FROM example_payments GROUP BY order_id ORDER BY order_id",
    )
    .fetch_all(db)
    .await?;
    let mut expected = committed.clone();
    expected.sort();
    let charged: Vec<String> = rows.iter().map(|(id, _)| id.clone()).collect();
    if charged != expected || rows.iter().any(|(_, n)| *n != 1) {
        return Err(format!(
            "payments {rows:?} are not the committed orders {expected:?}, once each"
        )
        .into());
    }
    println!("every committed order charged once; the declined one never");
    Ok(())
}
