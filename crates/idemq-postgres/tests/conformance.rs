//! The PostgreSQL store against the shared conformance suite, on the local server.

use std::time::Duration;

use idemq_postgres::PgStore;
use sqlx::postgres::PgPoolOptions;

const URL: &str = "postgres://postgres@127.0.0.1:5432/test";

async fn store() -> PgStore {
    PgStore::connect(URL)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at 127.0.0.1:5432 (db test) is required: {e}"))
}

/// A store pointed at a port where nothing listens, failing fast.
async fn unreachable() -> PgStore {
    let pool = PgPoolOptions::new()
        .acquire_timeout(Duration::from_millis(500))
        .connect_lazy("postgres://postgres@127.0.0.1:1/test")
        .unwrap();
    PgStore::from_pool(pool, "idemq_records").unwrap()
}

idemq_conformance::store_conformance! {
    store: store(),
    unreachable: unreachable(),
}
