//! `run_in_tx` and the edges of the MySQL store (hostile input, the sweeper, a lost or
//! unreachable server): the shared rules of `idemq_conformance::tx` on the local server.

use std::str::FromStr;
use std::time::Duration;

use idemq_conformance::tx::{Business, Server, SweepCounts};
use idemq_core::Scope;
use idemq_mysql::MySqlStore;
use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};
use sqlx::{MySqlConnection, MySqlPool};

const URL: &str = "mysql://root@127.0.0.1:3306/test";
const SERVER: &str = "MariaDB or MySQL at 127.0.0.1:3306 (root, db test)";

async fn store() -> MySqlStore {
    MySqlStore::connect(URL)
        .await
        .unwrap_or_else(|e| panic!("{SERVER} is required: {e}"))
}

/// One test's payments: a run id in a business table all runs share.
struct Payments {
    pool: MySqlPool,
    run: String,
}

impl Business for Payments {
    type Store = MySqlStore;
    type Error = sqlx::Error;

    async fn prepare(store: &MySqlStore) -> Self {
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS idemq_test_payments \
             (run VARCHAR(64) NOT NULL, serial VARCHAR(64) NOT NULL, cents BIGINT NOT NULL, \
              PRIMARY KEY (run, serial)) ENGINE = InnoDB",
        )
        .execute(store.pool())
        .await
        .unwrap();
        Self {
            pool: store.pool().clone(),
            run: uuid::Uuid::new_v4().simple().to_string(),
        }
    }

    async fn insert(&self, conn: &mut MySqlConnection, serial: &str) -> Result<(), sqlx::Error> {
        sqlx::query("INSERT INTO idemq_test_payments (run, serial, cents) VALUES (?, ?, 500)")
            .bind(&self.run)
            .bind(serial)
            .execute(conn)
            .await
            .map(drop)
    }

    async fn rows(&self) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM idemq_test_payments WHERE run = ?")
            .bind(&self.run)
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    fn failure() -> sqlx::Error {
        sqlx::Error::Protocol("injected failure".into())
    }

    async fn reopen(_: &MySqlStore) -> MySqlStore {
        store().await
    }

    async fn with_table(_: &MySqlStore, table: &str) -> Result<MySqlStore, idemq_core::StoreError> {
        MySqlStore::connect_with(MySqlConnectOptions::from_str(URL).unwrap(), table).await
    }

    fn with_max_result_bytes(store: MySqlStore, max: usize) -> MySqlStore {
        store.with_max_result_bytes(max)
    }

    async fn records(store: &MySqlStore, scope: Option<&Scope>) -> i64 {
        let t = store.table();
        let (all, one) = (
            format!("SELECT COUNT(*) FROM {t}"),
            format!("SELECT COUNT(*) FROM {t} WHERE scope = ?"),
        );
        let q = match scope {
            Some(scope) => sqlx::query_scalar(&one).bind(scope.as_str().as_bytes()),
            None => sqlx::query_scalar(&all),
        };
        q.fetch_one(store.pool()).await.unwrap()
    }

    async fn sweep_pass(store: &MySqlStore, batch: u64) -> SweepCounts {
        let mut sweeper = store.spawn_sweeper(Duration::from_secs(3600), batch);
        let s = sweeper.wait_passes(1).await;
        sweeper.stop().await;
        SweepCounts {
            deleted: s.deleted,
            batches: s.batches,
            errors: s.errors,
        }
    }
}

impl Server for Payments {
    async fn kill_session(
        &self,
        store: &MySqlStore,
        conn: &mut MySqlConnection,
    ) -> Result<(), sqlx::Error> {
        let id: u64 = sqlx::query_scalar("SELECT CONNECTION_ID()")
            .fetch_one(&mut *conn)
            .await?;
        sqlx::raw_sql(&format!("KILL {id}"))
            .execute(store.pool())
            .await
            .map(drop)
    }

    fn closed_port() -> MySqlStore {
        let pool = MySqlPoolOptions::new()
            .acquire_timeout(Duration::from_millis(500))
            .connect_lazy("mysql://root@127.0.0.1:1/test")
            .unwrap();
        MySqlStore::from_pool(pool, "idemq_records").unwrap()
    }
}

idemq_conformance::tx_conformance! {
    store: store(),
    business: Payments,
    server,
}
