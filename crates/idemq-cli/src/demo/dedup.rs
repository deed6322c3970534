//! Where the idempotency record lives, and so how it joins the handler.
//!
//! - A store apart from the business database ([`Dedup::Separate`]): the engine claims the
//!   key, the handler commits its own business transaction, the engine completes the key.
//!   A crash between those two commits applies the order twice, so the demo never injects
//!   one there.
//! - The business database itself, `--store same` ([`Dedup::InTx`]): the SQL store of the
//!   business database claims the key, runs the handler's writes and marks the key consumed
//!   in one transaction ([`TransactionalStore::run_in_tx`]). A crash anywhere before that
//!   one commit loses all of it, and the redelivery runs the handler again. A tiered store
//!   with `durable=same` does the same behind its Redis tier.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use idemq_core::adapter::HandlerFuture;
use idemq_core::store::{StoreError, TransactionalStore};
use idemq_core::{EngineConfig, EngineError, Fingerprint, IdempotencyKey, Outcome, Store};
use idemq_mysql::MySqlStore;
use idemq_postgres::PgStore;
use idemq_sqlite::SqliteStore;
use idemq_tiered::TieredStore;
use tokio::sync::oneshot;

use super::db::{receipt, BusinessDb, StockWriter};
use super::story::{Fault, HandlerError, Order};
use super::{DemoError, Topic};
use crate::url::{StoreUrl, UrlError};

/// How the consumers record consumed keys.
#[derive(Clone)]
pub enum Dedup {
    /// A store apart from the business database, driven by the engine.
    Separate(Arc<dyn Store>),
    /// A store in the business database, written in the handler's transaction.
    InTx(Arc<dyn InTx>),
}

impl Dedup {
    /// Opens the store `url` names; `same` and `durable=same` are built on `db`'s pool.
    pub async fn open(url: &StoreUrl, db: &BusinessDb) -> Result<Self, DemoError> {
        let failed = |e: StoreError| UrlError::Open {
            what: "store",
            url: url.to_string(),
            source: Box::new(e),
        };
        match url {
            StoreUrl::Same => Ok(Self::InTx(match db {
                BusinessDb::Sqlite(pool) => Arc::new(sqlite(pool).await.map_err(failed)?),
                BusinessDb::Mysql(pool) => Arc::new(mysql(pool).await.map_err(failed)?),
                BusinessDb::Postgres(pool) => Arc::new(postgres(pool).await.map_err(failed)?),
            })),
            StoreUrl::Tiered { cache, durable } if **durable == StoreUrl::Same => {
                let cache = cache.open_redis().await?;
                Ok(Self::InTx(match db {
                    BusinessDb::Sqlite(pool) => {
                        Arc::new(TieredStore::new(cache, sqlite(pool).await.map_err(failed)?))
                    }
                    BusinessDb::Mysql(pool) => {
                        Arc::new(TieredStore::new(cache, mysql(pool).await.map_err(failed)?))
                    }
                    BusinessDb::Postgres(pool) => Arc::new(TieredStore::new(
                        cache,
                        postgres(pool).await.map_err(failed)?,
                    )),
                }))
            }
            other => Ok(Self::Separate(other.open().await?)),
        }
    }
}

// The record table goes next to the business tables, in the same database and pool.
async fn sqlite(pool: &sqlx::SqlitePool) -> Result<SqliteStore, StoreError> {
    let store = SqliteStore::from_pool(pool.clone(), idemq_sqlite::DEFAULT_TABLE)?;
    store.migrate().await?;
    Ok(store)
}

async fn mysql(pool: &sqlx::MySqlPool) -> Result<MySqlStore, StoreError> {
    let store = MySqlStore::from_pool(pool.clone(), idemq_mysql::DEFAULT_TABLE)?;
    store.migrate().await?;
    Ok(store)
}

async fn postgres(pool: &sqlx::PgPool) -> Result<PgStore, StoreError> {
    let store = PgStore::from_pool(pool.clone(), idemq_postgres::DEFAULT_TABLE)?;
    store.migrate().await?;
    Ok(store)
}

/// The future of [`InTx::reduce_stock`].
pub type TxFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Outcome<HandlerError>, EngineError>> + Send + 'a>>;

/// A transactional store over the business database, running the story's handler.
///
/// Implemented for every [`TransactionalStore`] whose connection the handler can write
/// through, so the consumer holds one `Arc<dyn InTx>` whatever the database.
pub trait InTx: Store {
    /// Runs the handler for `order` in the store's transaction
    /// ([`TransactionalStore::run_in_tx`]), with `fault` injected: on a crash the handler
    /// sends on `crash` once its writes are done and the consumer drops this future before
    /// the commit.
    #[allow(clippy::too_many_arguments)]
    fn reduce_stock<'a>(
        &'a self,
        config: &'a EngineConfig,
        key: IdempotencyKey,
        fingerprint: Option<Fingerprint>,
        topic: Topic,
        order: Order,
        fault: Fault,
        crash: oneshot::Sender<()>,
    ) -> TxFuture<'a>;
}

impl<S> InTx for S
where
    S: TransactionalStore,
    S::Conn: StockWriter,
{
    fn reduce_stock<'a>(
        &'a self,
        config: &'a EngineConfig,
        key: IdempotencyKey,
        fingerprint: Option<Fingerprint>,
        topic: Topic,
        order: Order,
        fault: Fault,
        crash: oneshot::Sender<()>,
    ) -> TxFuture<'a> {
        let handler = handler::<S::Conn>(topic, order, fault, crash);
        Box::pin(self.run_in_tx(config, key, fingerprint, handler))
    }
}

/// The handler on the store's open transaction. It owns what it needs: the store may hold
/// it for any lifetime of the connection.
fn handler<C: StockWriter>(
    topic: Topic,
    order: Order,
    fault: Fault,
    crash: oneshot::Sender<()>,
) -> impl for<'t> FnOnce(&'t mut C) -> HandlerFuture<'t, String, HandlerError> + Send {
    move |conn: &mut C| -> HandlerFuture<'_, String, HandlerError> {
        Box::pin(async move {
            let left = conn.reduce(&topic, &order).await?;
            match fault {
                Fault::None => Ok(receipt(&order, left)),
                Fault::Error => Err(HandlerError::Injected),
                Fault::Crash => {
                    let _ = crash.send(());
                    std::future::pending().await
                }
                // The writes are done and the result is ready. Yield once so the consumer
                // (which looks at `crash` first) dies before this returns: had it returned,
                // the store could reach its COMMIT in the same poll, and the crash would
                // land after the commit instead of before it.
                Fault::CrashAfterWrite => {
                    let _ = crash.send(());
                    tokio::task::yield_now().await;
                    Ok(receipt(&order, left))
                }
            }
        })
    }
}
