//! `run_in_tx` and the edges of the PostgreSQL store (hostile input, the sweeper, a lost or
//! unreachable server): the shared rules of `idemq_conformance::tx` on the local server.

use std::str::FromStr;
use std::time::Duration;

use idemq_conformance::tx::{Business, Server, SweepCounts};
use idemq_core::Scope;
use idemq_postgres::PgStore;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgConnection, PgPool};

const URL: &str = "postgres://postgres@127.0.0.1:5432/test";
const SERVER: &str = "PostgreSQL at 127.0.0.1:5432 (db test)";

async fn store() -> PgStore {
    PgStore::connect(URL)
        .await
        .unwrap_or_else(|e| panic!("{SERVER} is required: {e}"))
}

/// One test's payments: a run id in a business table all runs share.
struct Payments {
    pool: PgPool,
    run: String,
}

impl Business for Payments {
    type Store = PgStore;
    type Error = sqlx::Error;

    async fn prepare(store: &PgStore) -> Self {
        // Creating the table is serialised: concurrent CREATE TABLE IF NOT EXISTS can
        // collide in PostgreSQL.
        let mut tx = store.pool().begin().await.unwrap();
        sqlx::query("SELECT pg_advisory_xact_lock(4242)")
            .execute(&mut *tx)
            .await
            .unwrap();
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS idemq_test_payments \
             (run TEXT NOT NULL, serial TEXT NOT NULL, cents BIGINT NOT NULL, \
              PRIMARY KEY (run, serial))",
        )
        .execute(&mut *tx)
        .await
        .unwrap();
        tx.commit().await.unwrap();
        Self {
            pool: store.pool().clone(),
            run: uuid::Uuid::new_v4().simple().to_string(),
        }
    }

    async fn insert(&self, conn: &mut PgConnection, serial: &str) -> Result<(), sqlx::Error> {
        sqlx::query("INSERT INTO idemq_test_payments (run, serial, cents) VALUES ($1, $2, 500)")
            .bind(&self.run)
            .bind(serial)
            .execute(conn)
            .await
            .map(drop)
    }

    async fn rows(&self) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM idemq_test_payments WHERE run = $1")
            .bind(&self.run)
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    fn failure() -> sqlx::Error {
        sqlx::Error::Protocol("injected failure".into())
    }

    async fn reopen(_: &PgStore) -> PgStore {
        store().await
    }

    async fn with_table(_: &PgStore, table: &str) -> Result<PgStore, idemq_core::StoreError> {
        PgStore::connect_with(PgConnectOptions::from_str(URL).unwrap(), table).await
    }

    fn with_max_result_bytes(store: PgStore, max: usize) -> PgStore {
        store.with_max_result_bytes(max)
    }

    async fn records(store: &PgStore, scope: Option<&Scope>) -> i64 {
        let t = store.table();
        let (all, one) = (
            format!("SELECT COUNT(*) FROM {t}"),
            format!("SELECT COUNT(*) FROM {t} WHERE scope = $1"),
        );
        let q = match scope {
            Some(scope) => sqlx::query_scalar(&one).bind(scope.as_str()),
            None => sqlx::query_scalar(&all),
        };
        q.fetch_one(store.pool()).await.unwrap()
    }

    async fn sweep_pass(store: &PgStore, batch: u64) -> SweepCounts {
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
        store: &PgStore,
        conn: &mut PgConnection,
    ) -> Result<(), sqlx::Error> {
        let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut *conn)
            .await?;
        sqlx::query("SELECT pg_terminate_backend($1)")
            .bind(pid)
            .execute(store.pool())
            .await
            .map(drop)
    }

    fn closed_port() -> PgStore {
        let pool = PgPoolOptions::new()
            .acquire_timeout(Duration::from_millis(500))
            .connect_lazy("postgres://postgres@127.0.0.1:1/test")
            .unwrap();
        PgStore::from_pool(pool, "idemq_records").unwrap()
    }
}

idemq_conformance::tx_conformance! {
    store: store(),
    business: Payments,
    server,
}
