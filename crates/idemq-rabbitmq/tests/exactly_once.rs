//! Three consumers, duplicates, and one consumer killed mid-handler: every order's stock
//! effect lands in MariaDB exactly once, in the same transaction as its dedup row.
//! Fails when RabbitMQ (5672) or MariaDB (3306, root, database `test`) is down.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use common::*;
use idemq_core::adapter::HandlerFuture;
use idemq_core::{Engine, EngineConfig, KeyStrategy, Scope};
use idemq_mysql::MySqlStore;
use idemq_rabbitmq::lapin::options::QueueDeclareOptions;
use idemq_rabbitmq::lapin::types::FieldTable;
use idemq_rabbitmq::lapin::Channel;
use idemq_rabbitmq::{
    in_tx, AmqpDelivery, Consumer, ConsumerHandle, Outgoing, Publisher, Topology,
};
use sqlx::{MySqlConnection, MySqlPool};
use tokio::sync::mpsc;

const ORDERS: u32 = 200;
const SKUS: u32 = 5;
const STOCK: i64 = 1_000_000;

#[derive(Debug, Clone)]
struct Order {
    id: String,
    sku: u32,
    qty: i64,
}

fn decode(d: &AmqpDelivery) -> Result<Order, String> {
    let text = std::str::from_utf8(d.data()).map_err(|e| e.to_string())?;
    let mut parts = text.split(',');
    let mut next = || parts.next().ok_or_else(|| format!("short order {text:?}"));
    let id = next()?.to_owned();
    let sku = next()?.parse().map_err(|e| format!("bad sku: {e}"))?;
    let qty = next()?.parse().map_err(|e| format!("bad qty: {e}"))?;
    Ok(Order { id, sku, qty })
}

/// A tiny deterministic generator, so a failure can be replayed.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

struct Tables {
    stock: String,
    flow: String,
}

/// The consumer; with a `trap`, its `n`-th handler run writes its effect, reports, and
/// hangs before the commit, so the consumer can be killed mid-transaction.
fn consumer(
    store: &Arc<MySqlStore>,
    topology: &Topology,
    scope: &Scope,
    tables: &Arc<Tables>,
    trap: Option<(u32, mpsc::UnboundedSender<String>)>,
) -> ConsumerHandle {
    let engine = Engine::new(
        store.clone(),
        EngineConfig::new(scope.clone()),
        KeyStrategy::MessageId,
    );
    let runs = Arc::new(AtomicU32::new(0));
    let tables = tables.clone();
    let handler = in_tx(
        store.clone(),
        decode,
        move |order: Order, tx: &mut MySqlConnection| -> HandlerFuture<'_, (), sqlx::Error> {
            let tables = tables.clone();
            let run = runs.fetch_add(1, Ordering::SeqCst) + 1;
            let trap = trap.clone().filter(|(n, _)| *n == run).map(|(_, t)| t);
            Box::pin(async move {
                sqlx::query(&format!(
                    "UPDATE {} SET qty = qty - ? WHERE sku = ?",
                    tables.stock
                ))
                .bind(order.qty)
                .bind(order.sku)
                .execute(&mut *tx)
                .await?;
                sqlx::query(&format!(
                    "INSERT INTO {} (order_id, sku, delta) VALUES (?, ?, ?)",
                    tables.flow
                ))
                .bind(&order.id)
                .bind(order.sku)
                .bind(-order.qty)
                .execute(&mut *tx)
                .await?;
                if let Some(trap) = trap {
                    let _ = trap.send(order.id.clone());
                    std::future::pending::<()>().await;
                }
                Ok(())
            })
        },
    );
    Consumer::new(uri(), topology.clone(), engine)
        .prefetch(8)
        .concurrency(4)
        .spawn(handler)
}

async fn ready(channel: &Channel, queue: &str) -> u32 {
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap()
        .message_count()
}

async fn setup_db(pool: &MySqlPool, tables: &Tables) {
    sqlx::query(&format!(
        "CREATE TABLE {} (sku INT PRIMARY KEY, qty BIGINT NOT NULL)",
        tables.stock
    ))
    .execute(pool)
    .await
    .unwrap();
    // No unique key on order_id: a double apply must show as two rows, not as an error.
    sqlx::query(&format!(
        "CREATE TABLE {} (id BIGINT AUTO_INCREMENT PRIMARY KEY, order_id VARCHAR(64) NOT NULL, \
         sku INT NOT NULL, delta BIGINT NOT NULL)",
        tables.flow
    ))
    .execute(pool)
    .await
    .unwrap();
    for sku in 0..SKUS {
        sqlx::query(&format!(
            "INSERT INTO {} (sku, qty) VALUES (?, ?)",
            tables.stock
        ))
        .bind(sku)
        .bind(STOCK)
        .execute(pool)
        .await
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_consumers_one_killed_apply_each_order_once() {
    let topology = fresh("once", fast_policy(5));
    let (_conn, admin) = admin(&topology).await;
    let store = Arc::new(
        MySqlStore::connect("mysql://root@127.0.0.1:3306/test")
            .await
            .unwrap_or_else(|e| panic!("MariaDB must be running on 3306 (root, db test): {e}")),
    );
    let id = &topology.queue()[7..];
    let tables = Arc::new(Tables {
        stock: format!("amqp_stock_{id}"),
        flow: format!("amqp_flow_{id}"),
    });
    setup_db(store.pool(), &tables).await;
    let scope = Scope::new(format!("stock/{}", topology.queue())).unwrap();

    // Every order once, a random third of them again, shuffled.
    let mut rng = Lcg(42);
    let orders: Vec<Order> = (0..ORDERS)
        .map(|i| Order {
            id: format!("order-{i:04}"),
            sku: i % SKUS,
            qty: 1 + rng.below(3) as i64,
        })
        .collect();
    let mut sends: Vec<&Order> = orders.iter().collect();
    for _ in 0..ORDERS / 3 {
        sends.push(&orders[rng.below(ORDERS.into()) as usize]);
    }
    for i in (1..sends.len()).rev() {
        sends.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let publisher = Publisher::on_channel(admin.clone(), &topology)
        .await
        .unwrap();
    publisher
        .publish_all(
            sends
                .iter()
                .map(|o| Outgoing::new(format!("{},{},{}", o.id, o.sku, o.qty)).key(o.id.clone())),
        )
        .await
        .unwrap();

    let (trap_tx, mut trapped) = mpsc::unbounded_channel();
    let doomed = consumer(&store, &topology, &scope, &tables, Some((15, trap_tx)));
    let b = consumer(&store, &topology, &scope, &tables, None);
    let c = consumer(&store, &topology, &scope, &tables, None);

    // The doomed consumer's 15th handler has written its effect and hangs uncommitted:
    // kill it there, like a crashed process.
    let hung = trapped.recv().await.expect("the trap fired");
    doomed.kill().await;

    let count = |sql: String| {
        let pool = store.pool().clone();
        async move {
            sqlx::query_scalar::<_, i64>(&sql)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let distinct = count(format!(
            "SELECT COUNT(DISTINCT order_id) FROM {}",
            tables.flow
        ))
        .await;
        let mut idle = distinct == i64::from(ORDERS);
        for q in topology.queues() {
            idle &= ready(&admin, q).await == 0;
        }
        if idle {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {distinct} orders applied in 60 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let survivors_acked = b.stats().acked.get() + c.stats().acked.get();
    b.shutdown().await.unwrap();
    c.shutdown().await.unwrap();

    let rows: Vec<(String, i64)> = sqlx::query_as(&format!(
        "SELECT order_id, COUNT(*) FROM {} GROUP BY order_id",
        tables.flow
    ))
    .fetch_all(store.pool())
    .await
    .unwrap();
    let per_order: HashMap<String, i64> = rows.into_iter().collect();
    assert_eq!(per_order.len(), ORDERS as usize, "no order lost");
    let doubled: Vec<_> = per_order.iter().filter(|(_, n)| **n != 1).collect();
    assert!(doubled.is_empty(), "applied more than once: {doubled:?}");
    assert_eq!(
        per_order.get(&hung),
        Some(&1),
        "the killed run was redone once"
    );
    for sku in 0..SKUS {
        let want: i64 = STOCK
            - orders
                .iter()
                .filter(|o| o.sku == sku)
                .map(|o| o.qty)
                .sum::<i64>();
        let got = count(format!(
            "SELECT qty FROM {} WHERE sku = {sku}",
            tables.stock
        ))
        .await;
        assert_eq!(got, want, "stock of sku {sku}");
    }
    assert_eq!(ready(&admin, topology.dead_letter_queue()).await, 0);
    // Every message sent was acked by a survivor, except what the doomed one acked first.
    assert!(survivors_acked > 0 && survivors_acked <= sends.len() as u64);

    for t in [&tables.stock, &tables.flow] {
        sqlx::query(&format!("DROP TABLE {t}"))
            .execute(store.pool())
            .await
            .unwrap();
    }
    topology.delete(&admin).await.unwrap();
}
