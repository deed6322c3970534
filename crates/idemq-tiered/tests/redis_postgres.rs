//! Redis in front of PostgreSQL, on the local servers: the conformance suite, and what
//! happens when either tier fails. Unreachable servers fail these tests; they never skip.

use std::time::Duration;

use idemq_conformance::rules::fresh_scope;
use idemq_core::store::TransactionalStore;
use idemq_core::{EngineConfig, EngineError, IdempotencyKey, Outcome, Store, StoreError};
use idemq_postgres::PgStore;
use idemq_redis::RedisStore;
use idemq_tiered::TieredStore;
use sqlx::postgres::PgPoolOptions;

const REDIS: &str = "redis://127.0.0.1:6379";
const POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/test";

async fn redis() -> RedisStore {
    RedisStore::builder()
        .response_timeout(Duration::from_secs(30))
        .connect(REDIS)
        .await
        .unwrap_or_else(|e| panic!("Redis at 127.0.0.1:6379 is required: {e}"))
}

/// A Redis store where nothing listens: the cache is down.
fn redis_down() -> RedisStore {
    RedisStore::builder()
        .connection_timeout(Duration::from_millis(300))
        .response_timeout(Duration::from_millis(300))
        .reconnect_retries(0)
        .connect_lazy("redis://127.0.0.1:1")
        .unwrap()
}

async fn postgres() -> PgStore {
    PgStore::connect(POSTGRES)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at 127.0.0.1:5432 (db test) is required: {e}"))
}

/// A PostgreSQL store where nothing listens: the durable tier is down.
fn postgres_down() -> PgStore {
    let pool = PgPoolOptions::new()
        .acquire_timeout(Duration::from_millis(500))
        .connect_lazy("postgres://postgres@127.0.0.1:1/test")
        .unwrap();
    PgStore::from_pool(pool, "idemq_records").unwrap()
}

idemq_conformance::store_conformance! {
    store: async { TieredStore::new(redis().await, postgres().await) },
    unreachable: async { TieredStore::new(redis().await, postgres_down()) },
}

/// With Redis down every rule still holds: PostgreSQL decides alone.
mod redis_down {
    use super::*;

    idemq_conformance::store_conformance! {
        store: async { TieredStore::new(redis_down(), postgres().await) },
        unreachable: async { TieredStore::new(redis_down(), postgres_down()) },
    }
}

/// Creates the business table of these tests.
async fn payments(store: &PgStore) -> String {
    let table = format!("tiered_payments_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(&format!(
        "CREATE TABLE {table} (serial TEXT NOT NULL, cents BIGINT NOT NULL)"
    ))
    .execute(store.pool())
    .await
    .unwrap();
    table
}

async fn pay(
    store: &TieredStore<RedisStore, PgStore>,
    config: &EngineConfig,
    table: &str,
    serial: &str,
) -> Result<Outcome<sqlx::Error>, EngineError> {
    let sql = format!("INSERT INTO {table} (serial, cents) VALUES ($1, 500)");
    let serial_owned = serial.to_owned();
    store
        .run_in_tx(
            config,
            IdempotencyKey::new(serial).unwrap(),
            None,
            move |tx| {
                Box::pin(async move {
                    sqlx::query(&sql)
                        .bind(serial_owned)
                        .execute(&mut *tx)
                        .await?;
                    Ok::<_, sqlx::Error>("paid")
                })
            },
        )
        .await
}

async fn paid(store: &PgStore, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
        .fetch_one(store.pool())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restarted_empty_never_lets_a_payment_run_twice() {
    let store = TieredStore::new(redis().await, postgres().await);
    let table = payments(store.durable()).await;
    let config = EngineConfig::new(fresh_scope());
    let first = pay(&store, &config, &table, "pay-1").await.unwrap();
    assert!(matches!(first, Outcome::Processed { .. }), "{first:?}");
    // The cache now answers the duplicate without PostgreSQL.
    let cached = store.cache().stats(&config.scope).await.unwrap();
    assert_eq!(cached.consumed, 1);
    // Redis restarted empty (it keeps nothing on disk here).
    store.cache().purge(&config.scope).await.unwrap();
    let again = pay(&store, &config, &table, "pay-1").await.unwrap();
    assert!(matches!(again, Outcome::Duplicate { .. }), "{again:?}");
    assert_eq!(paid(store.durable(), &table).await, 1);
    // The durable answer refilled the cache.
    assert_eq!(
        store.cache().stats(&config.scope).await.unwrap().consumed,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_payments_still_apply_once() {
    let store = TieredStore::new(redis_down(), postgres().await);
    let table = payments(store.durable()).await;
    let config = EngineConfig::new(fresh_scope());
    let outcomes =
        futures::future::join_all((0..8).map(|_| pay(&store, &config, &table, "pay-2"))).await;
    let processed = outcomes
        .iter()
        .filter(|o| matches!(o, Ok(Outcome::Processed { .. })))
        .count();
    assert_eq!(processed, 1, "{outcomes:?}");
    assert_eq!(paid(store.durable(), &table).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_postgres_down_nothing_new_is_acknowledged() {
    let store = TieredStore::new(redis().await, postgres_down());
    let config = EngineConfig::new(fresh_scope());
    let out = store
        .run_in_tx(
            &config,
            IdempotencyKey::new("pay-3").unwrap(),
            None,
            |_tx| Box::pin(async { Ok::<_, sqlx::Error>(()) }),
        )
        .await;
    assert!(
        matches!(out, Err(EngineError::Store(StoreError::Unavailable(_)))),
        "{out:?}"
    );
}
