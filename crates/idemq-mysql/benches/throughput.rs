//! The shared SQL throughput bench (`idemq_sql::bench`) on the local MySQL or MariaDB.
//!
//! `cargo bench -p idemq-mysql --bench throughput` (about 30 s).

use idemq_mysql::MySqlStore;
use idemq_sql::bench::{self, Dialect};
use sqlx::MySqlConnection;

const URL: &str = "mysql://root@127.0.0.1:3306/test";

struct MySql;

impl Dialect for MySql {
    type Store = MySqlStore;
    const NAME: &'static str = "MySQL/MariaDB";

    async fn setup() -> MySqlStore {
        let store = MySqlStore::connect(URL).await.unwrap_or_else(|e| {
            panic!("MariaDB or MySQL at 127.0.0.1:3306 (root, db test) is required: {e}")
        });
        sqlx::raw_sql(
            "DROP TABLE IF EXISTS idemq_bench_rows;
             CREATE TABLE idemq_bench_rows (k VARCHAR(64) PRIMARY KEY, v BIGINT NOT NULL) \
               ENGINE = InnoDB;",
        )
        .execute(store.pool())
        .await
        .unwrap();
        store
    }

    async fn insert(conn: &mut MySqlConnection, k: String, v: i64) -> Result<(), sqlx::Error> {
        sqlx::query("INSERT INTO idemq_bench_rows (k, v) VALUES (?, ?)")
            .bind(k)
            .bind(v)
            .execute(conn)
            .await
            .map(drop)
    }

    async fn insert_alone(store: MySqlStore, k: String, v: i64) {
        let mut tx = store.pool().begin().await.unwrap();
        Self::insert(&mut tx, k, v).await.unwrap();
        tx.commit().await.unwrap();
    }

    async fn insert_many(store: MySqlStore, keys: Vec<String>) {
        let rows = vec!["(?, 0)"; keys.len()].join(", ");
        let sql = format!("INSERT INTO idemq_bench_rows (k, v) VALUES {rows}");
        let mut q = sqlx::query(&sql);
        for k in keys {
            q = q.bind(k);
        }
        q.execute(store.pool()).await.unwrap();
    }

    async fn teardown(store: &MySqlStore) {
        sqlx::query("DROP TABLE idemq_bench_rows")
            .execute(store.pool())
            .await
            .unwrap();
    }
}

#[tokio::main]
async fn main() {
    bench::run::<MySql>().await;
}
