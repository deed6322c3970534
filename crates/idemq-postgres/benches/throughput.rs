//! The shared SQL throughput bench (`idemq_sql::bench`) on the local PostgreSQL.
//!
//! `cargo bench -p idemq-postgres --bench throughput` (about 30 s).

use idemq_postgres::PgStore;
use idemq_sql::bench::{self, Dialect};
use sqlx::PgConnection;

const URL: &str = "postgres://postgres@127.0.0.1:5432/test";

struct Postgres;

impl Dialect for Postgres {
    type Store = PgStore;
    const NAME: &'static str = "PostgreSQL";

    async fn setup() -> PgStore {
        let store = PgStore::connect(URL)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at 127.0.0.1:5432 (db test) is required: {e}"));
        sqlx::raw_sql(
            "DROP TABLE IF EXISTS idemq_bench_rows;
             CREATE TABLE idemq_bench_rows (k TEXT PRIMARY KEY, v BIGINT NOT NULL);",
        )
        .execute(store.pool())
        .await
        .unwrap();
        store
    }

    async fn insert(conn: &mut PgConnection, k: String, v: i64) -> Result<(), sqlx::Error> {
        sqlx::query("INSERT INTO idemq_bench_rows (k, v) VALUES ($1, $2)")
            .bind(k)
            .bind(v)
            .execute(conn)
            .await
            .map(drop)
    }

    async fn insert_alone(store: PgStore, k: String, v: i64) {
        let mut tx = store.pool().begin().await.unwrap();
        Self::insert(&mut tx, k, v).await.unwrap();
        tx.commit().await.unwrap();
    }

    async fn insert_many(store: PgStore, keys: Vec<String>) {
        sqlx::query("INSERT INTO idemq_bench_rows (k, v) SELECT k, 0 FROM UNNEST($1::text[]) AS k")
            .bind(keys)
            .execute(store.pool())
            .await
            .unwrap();
    }

    async fn teardown(store: &PgStore) {
        sqlx::query("DROP TABLE idemq_bench_rows")
            .execute(store.pool())
            .await
            .unwrap();
    }
}

#[tokio::main]
async fn main() {
    bench::run::<Postgres>().await;
}
