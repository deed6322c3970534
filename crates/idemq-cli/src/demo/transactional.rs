//! `demo produce --transactional` on RocketMQ: each order is created in the business
//! database by the local transaction of its half message, with the transaction-log row in
//! the same transaction, so the "reduce stock" message is delivered if and only if the
//! order committed. `demo check` then proves it: a message of an order that never
//! committed would leave a flow row of an unknown order, a committed order whose message
//! was lost would have none.
//!
//! The faults: a share of local transactions decline (the order rolls back, and so does
//! its message); `--crash-after-commit N` kills the process right after the N-th local
//! commit, before the broker hears of it (the check-back of the next producer process
//! delivers it); `--crash-in-tx N` kills it in the N-th local transaction before its commit
//! (the check-back rolls it back after the grace period).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use idemq_mysql::MySqlTxLog;
use idemq_postgres::PgTxLog;
use idemq_rocketmq::rocketmq_client_rust::LocalTransactionState;
use idemq_rocketmq::transaction::{TxConfig, TxError, TxProducer};
use idemq_sql::TxLog;
use idemq_sqlite::SqliteTxLog;

use super::broker::rocketmq::RocketBroker;
use super::chance::Chance;
use super::story::{orders, BusinessDb, Order};
use super::{DemoConfig, DemoError, Topic};
use crate::url::BrokerUrl;

/// The transaction-log table of the demo, in the business database.
const TX_LOG: &str = "demo_tx_log";

/// The transactional faults asked for.
#[derive(Debug, Clone, Default)]
pub struct TxFaults {
    /// Local transactions that decline, as a fraction of the orders.
    pub declines: f64,
    /// Die right after this local commit (1-based), before the broker is told.
    pub crash_after_commit: Option<u64>,
    /// Die in this local transaction (1-based), after its writes, before its commit.
    pub crash_in_tx: Option<u64>,
    /// Stay up this long after the last send, answering check-backs.
    pub linger: Duration,
    /// How long a message without a log row is in doubt before a check-back rolls it back.
    pub grace: Duration,
}

/// What a transactional produce did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TxTally {
    /// Orders whose local transaction committed.
    pub committed: u64,
    /// Of those, the ones the broker learns of from a check-back (the local transaction
    /// outlasted the client's wait, or its commit was in doubt).
    pub left_to_check: u64,
    /// Orders whose local transaction declined: rolled back, never delivered.
    pub declined: u64,
    /// Orders already in the log (an earlier process sent them).
    pub already_sent: u64,
    /// Check-backs answered committed, rolled back and unknown while this process ran.
    pub checks: (u64, u64, u64),
}

/// Why an order's local transaction did not commit on purpose.
#[derive(Debug, thiserror::Error)]
enum LocalError {
    #[error("payment declined")]
    Declined,
    #[error("business database: {0}")]
    Db(#[from] sqlx::Error),
}

/// `demo produce --transactional`: creates the stock rows, then sends each order as a
/// half message whose local transaction inserts the order.
pub async fn produce_on(cfg: &DemoConfig, faults: &TxFaults) -> Result<TxTally, DemoError> {
    cfg.validate()?;
    if !(0.0..=0.9).contains(&faults.declines) {
        return Err(DemoError::Usage("--declines must be within 0..=0.9".into()));
    }
    let BrokerUrl::RocketMq(url) = &cfg.broker else {
        return Err(DemoError::Usage(
            "--transactional needs --broker rocketmq://HOST:PORT (half messages are RocketMQ's)"
                .into(),
        ));
    };
    let broker = RocketBroker::connect(url, &cfg.topic, &cfg.timing.retry, 1).await?;
    let db = BusinessDb::open(&cfg.db, 4).await?;
    db.create_schema().await?;
    db.place_stock(&cfg.topic).await?;
    let config = tx_config(faults);
    let tally = match &db {
        BusinessDb::Sqlite(pool) => {
            let log = SqliteTxLog::new(pool.clone(), TX_LOG).map_err(store)?;
            log.migrate().await.map_err(store)?;
            let p = broker.tx_producer(log, config).await?;
            send_orders(&p, cfg, faults, &db, place_sqlite).await
        }
        BusinessDb::Mysql(pool) => {
            let log = MySqlTxLog::new(pool.clone(), TX_LOG).map_err(store)?;
            log.migrate().await.map_err(store)?;
            let p = broker.tx_producer(log, config).await?;
            send_orders(&p, cfg, faults, &db, place_mysql).await
        }
        BusinessDb::Postgres(pool) => {
            let log = PgTxLog::new(pool.clone(), TX_LOG).map_err(store)?;
            log.migrate().await.map_err(store)?;
            let p = broker.tx_producer(log, config).await?;
            send_orders(&p, cfg, faults, &db, place_postgres).await
        }
    };
    broker.shutdown().await;
    tally
}

fn store(e: idemq_core::StoreError) -> DemoError {
    DemoError::Usage(format!("transaction log: {e}"))
}

fn tx_config(faults: &TxFaults) -> TxConfig {
    let mut config = TxConfig {
        grace: faults.grace,
        ..TxConfig::default()
    };
    if let Some(n) = faults.crash_after_commit {
        let commits = Arc::new(AtomicU64::new(0));
        config.after_commit = Some(Arc::new(move |_| {
            if commits.fetch_add(1, Ordering::SeqCst) + 1 == n {
                eprintln!("idemq demo produce: crashing after local commit {n}, before the broker hears of it");
                std::process::abort();
            }
        }));
    }
    config
}

/// What the local transaction of one order does.
#[derive(Debug, Clone)]
struct Local {
    sql: String,
    topic: Topic,
    order: Order,
    decline: bool,
    crash: bool,
}

impl Local {
    /// After the order's insert: die, decline, or go on to the commit.
    fn after_insert(&self) -> Result<(), LocalError> {
        if self.crash {
            eprintln!("idemq demo produce: crashing inside a local transaction, before its commit");
            std::process::abort();
        }
        if self.decline {
            return Err(LocalError::Declined);
        }
        Ok(())
    }
}

/// The local transaction on each database: one text, one connection type each.
macro_rules! place_on {
    ($name:ident, $conn:ty) => {
        fn $name(
            l: Local,
        ) -> impl for<'c> FnOnce(&'c mut $conn) -> BoxFuture<'c, Result<(), LocalError>> + Send {
            move |c| {
                Box::pin(async move {
                    sqlx::query(&l.sql)
                        .bind(l.topic.as_str())
                        .bind(&l.order.order_id)
                        .bind(&l.order.sku)
                        .bind(l.order.qty)
                        .execute(&mut *c)
                        .await?;
                    l.after_insert()
                })
            }
        }
    };
}
place_on!(place_sqlite, sqlx::SqliteConnection);
place_on!(place_mysql, sqlx::MySqlConnection);
place_on!(place_postgres, sqlx::PgConnection);

async fn send_orders<L, F>(
    producer: &TxProducer<L>,
    cfg: &DemoConfig,
    faults: &TxFaults,
    db: &BusinessDb,
    place: impl Fn(Local) -> F,
) -> Result<TxTally, DemoError>
where
    L: TxLog,
    F: for<'c> FnOnce(
            &'c mut <L::Db as sqlx::Database>::Connection,
        ) -> BoxFuture<'c, Result<(), LocalError>>
        + Send,
{
    // The same seed declines the same orders, so a rerun after a crash agrees.
    let mut chance = Chance::fork(cfg.seed, u64::MAX - 1);
    let sql = db.sql("INSERT INTO demo_orders (topic, order_id, sku, qty) VALUES (?, ?, ?, ?)");
    let mut tally = TxTally::default();
    for (i, order) in orders(cfg.orders).into_iter().enumerate() {
        let decline = chance.happens(faults.declines);
        let local = Local {
            sql: sql.clone(),
            topic: cfg.topic.clone(),
            crash: faults.crash_in_tx == Some(i as u64 + 1),
            decline,
            order: order.clone(),
        };
        let msg = order_message(&cfg.topic, &order);
        match producer.send_in_transaction(msg, place(local)).await {
            Ok(sent) => {
                tally.committed += 1;
                if sent.reported != LocalTransactionState::CommitMessage {
                    tally.left_to_check += 1;
                }
            }
            Err(TxError::Local(LocalError::Declined)) => tally.declined += 1,
            Err(TxError::Duplicate(_)) => tally.already_sent += 1,
            Err(TxError::InDoubt(e)) => {
                tracing::warn!(order = %order.order_id, error = %e, "local commit in doubt: left to the check-back");
                tally.left_to_check += 1;
            }
            Err(TxError::Local(LocalError::Db(e))) => return Err(DemoError::Db(e)),
            Err(e) => return Err(DemoError::Usage(format!("transactional send: {e}"))),
        }
    }
    tokio::time::sleep(faults.linger).await;
    let c = producer.checks();
    tally.checks = (c.committed, c.rolled_back, c.unknown);
    producer.shutdown().await;
    Ok(tally)
}

/// The order's message: keyed by the order id, its transaction id derived from the topic
/// and the order, so a rerun finds the orders an earlier process sent.
fn order_message(topic: &Topic, order: &Order) -> idemq_rocketmq::Outgoing {
    idemq_rocketmq::Outgoing::new(RocketBroker::topic_name(topic), order.encode())
        .key(order.order_id.clone())
        .id(format!("{}/{}", topic.as_str(), order.order_id))
}
