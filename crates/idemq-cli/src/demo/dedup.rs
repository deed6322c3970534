//! Where the idempotency record lives, and so how it joins the handler.
//!
//! - A store apart from the business database ([`Dedup::Separate`]): the engine claims the
//!   key, the handler commits its own business transaction, the engine completes the key.
//!   A crash between those two commits applies the order twice, so the demo never injects
//!   one there.
//! - The business database itself, `--store same` ([`Dedup::InTx`]): the SQL store of the
//!   business database claims the key, runs the handler's writes and marks the key consumed
//!   in one transaction ([`TransactionalStore::run_in_tx`](idemq_core::store::TransactionalStore::run_in_tx)). A crash anywhere before that
//!   one commit loses all of it, and the redelivery runs the handler again. A tiered store
//!   with `durable=same` does the same behind its Redis tier. The consumer's handler is the
//!   runtime's [`in_tx`](idemq_consumer::in_tx), as in a user's service.

use std::sync::Arc;

use idemq_core::store::StoreError;
use idemq_core::Store;
use idemq_mysql::MySqlStore;
use idemq_postgres::PgStore;
use idemq_redis::RedisStore;
use idemq_sqlite::SqliteStore;
use idemq_tiered::TieredStore;

use super::db::BusinessDb;
use super::DemoError;
use crate::url::{StoreUrl, UrlError};

/// How the consumers record consumed keys.
#[derive(Clone)]
pub enum Dedup {
    /// A store apart from the business database, driven by the engine.
    Separate(Arc<dyn Store>),
    /// A store in the business database, written in the handler's transaction.
    InTx(TxStore),
}

/// A [`TransactionalStore`](idemq_core::store::TransactionalStore) over the business
/// database, by kind: the consumer is built for the concrete store, so the store whose
/// transaction the handler writes through is the one that claims
/// ([`TxEngine`](idemq_core::TxEngine)).
#[derive(Clone)]
pub enum TxStore {
    /// The SQLite store in the business file.
    Sqlite(Arc<SqliteStore>),
    /// The MySQL/MariaDB store in the business database.
    Mysql(Arc<MySqlStore>),
    /// The PostgreSQL store in the business database.
    Postgres(Arc<PgStore>),
    /// Redis in front of the SQLite store.
    TieredSqlite(Arc<TieredStore<RedisStore, SqliteStore>>),
    /// Redis in front of the MySQL/MariaDB store.
    TieredMysql(Arc<TieredStore<RedisStore, MySqlStore>>),
    /// Redis in front of the PostgreSQL store.
    TieredPostgres(Arc<TieredStore<RedisStore, PgStore>>),
}

/// Runs `$body` with `$store` bound to the concrete store of a [`TxStore`].
macro_rules! with_tx_store {
    ($tx:expr, |$store:ident| $body:expr) => {
        match $tx {
            $crate::demo::dedup::TxStore::Sqlite($store) => $body,
            $crate::demo::dedup::TxStore::Mysql($store) => $body,
            $crate::demo::dedup::TxStore::Postgres($store) => $body,
            $crate::demo::dedup::TxStore::TieredSqlite($store) => $body,
            $crate::demo::dedup::TxStore::TieredMysql($store) => $body,
            $crate::demo::dedup::TxStore::TieredPostgres($store) => $body,
        }
    };
}
pub(crate) use with_tx_store;

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
                BusinessDb::Sqlite(pool) => {
                    TxStore::Sqlite(Arc::new(sqlite(pool).await.map_err(failed)?))
                }
                BusinessDb::Mysql(pool) => {
                    TxStore::Mysql(Arc::new(mysql(pool).await.map_err(failed)?))
                }
                BusinessDb::Postgres(pool) => {
                    TxStore::Postgres(Arc::new(postgres(pool).await.map_err(failed)?))
                }
            })),
            StoreUrl::Tiered { cache, durable } if **durable == StoreUrl::Same => {
                let cache = cache.open_redis().await?;
                Ok(Self::InTx(match db {
                    BusinessDb::Sqlite(pool) => TxStore::TieredSqlite(Arc::new(TieredStore::new(
                        cache,
                        sqlite(pool).await.map_err(failed)?,
                    ))),
                    BusinessDb::Mysql(pool) => TxStore::TieredMysql(Arc::new(TieredStore::new(
                        cache,
                        mysql(pool).await.map_err(failed)?,
                    ))),
                    BusinessDb::Postgres(pool) => TxStore::TieredPostgres(Arc::new(
                        TieredStore::new(cache, postgres(pool).await.map_err(failed)?),
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
