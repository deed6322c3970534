//! `run_in_tx` and the edges of the SQLite store (hostile input, oversized results, the
//! sweeper): the shared rules of `idemq_conformance::tx` on a temporary file, and what only
//! SQLite has (files that cannot be opened).

use std::sync::Arc;
use std::time::Duration;

use idemq_conformance::tx::{Business, SweepCounts};
use idemq_core::{ClaimRequest, IdempotencyKey, RecordKey, Scope, Store, StoreError};
use idemq_sqlite::SqliteStore;
use sqlx::{SqliteConnection, SqlitePool};

/// A store on a fresh file in a temporary directory that lives as long as the process.
async fn store() -> SqliteStore {
    let dir = tempfile::tempdir().expect("a temporary directory").keep();
    let url = format!("sqlite://{}", dir.join("idemq.db").display());
    SqliteStore::connect(&url)
        .await
        .expect("open the SQLite file")
}

fn key(k: &str) -> IdempotencyKey {
    IdempotencyKey::new(k).unwrap()
}

/// The payments table in the test's own file.
struct Payments {
    pool: SqlitePool,
}

impl Business for Payments {
    type Store = SqliteStore;
    type Error = sqlx::Error;

    async fn prepare(store: &SqliteStore) -> Self {
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS payments \
             (serial TEXT PRIMARY KEY, cents INTEGER NOT NULL)",
        )
        .execute(store.pool())
        .await
        .unwrap();
        Self {
            pool: store.pool().clone(),
        }
    }

    async fn insert(&self, conn: &mut SqliteConnection, serial: &str) -> Result<(), sqlx::Error> {
        sqlx::query("INSERT INTO payments (serial, cents) VALUES (?1, 500)")
            .bind(serial)
            .execute(conn)
            .await
            .map(drop)
    }

    async fn rows(&self) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM payments")
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    fn failure() -> sqlx::Error {
        sqlx::Error::Protocol("injected failure".into())
    }

    async fn reopen(store: &SqliteStore) -> SqliteStore {
        let file = store.pool().connect_options().get_filename().to_owned();
        SqliteStore::connect(&format!("sqlite://{}", file.display()))
            .await
            .unwrap()
    }

    async fn with_table(store: &SqliteStore, table: &str) -> Result<SqliteStore, StoreError> {
        let options = (*store.pool().connect_options()).clone();
        SqliteStore::connect_with(options, table).await
    }

    fn with_max_result_bytes(store: SqliteStore, max: usize) -> SqliteStore {
        store.with_max_result_bytes(max)
    }

    async fn records(store: &SqliteStore, scope: Option<&Scope>) -> i64 {
        let t = store.table();
        let (all, one) = (
            format!("SELECT COUNT(*) FROM {t}"),
            format!("SELECT COUNT(*) FROM {t} WHERE scope = ?1"),
        );
        let q = match scope {
            Some(scope) => sqlx::query_scalar(&one).bind(scope.as_str()),
            None => sqlx::query_scalar(&all),
        };
        q.fetch_one(store.pool()).await.unwrap()
    }

    async fn sweep_pass(store: &SqliteStore, batch: u64) -> SweepCounts {
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

idemq_conformance::tx_conformance! {
    store: store(),
    business: Payments,
}

#[tokio::test]
async fn bad_table_names_and_unopenable_files_are_typed_errors() {
    let bad =
        SqliteStore::connect_with("sqlite::memory:".parse().unwrap(), "idemq; DROP TABLE x").await;
    assert!(matches!(bad, Err(StoreError::Config(_))), "{bad:?}");
    let missing = SqliteStore::connect("sqlite:///nonexistent-dir/idemq/x.db").await;
    assert!(
        matches!(missing, Err(StoreError::Unavailable(_))),
        "{missing:?}"
    );
    // A lazily opened pool on such a path fails at the first claim, as unavailable.
    let pool = sqlx::SqlitePool::connect_lazy("sqlite:///nonexistent-dir/idemq/x.db").unwrap();
    let lazy = Arc::new(SqliteStore::from_pool(pool, "idemq_records").unwrap());
    let req = ClaimRequest {
        key: RecordKey::new(Scope::new("s").unwrap(), key("k")),
        fingerprint: None,
        lease: Duration::from_secs(1),
        retention: Duration::from_secs(1),
    };
    assert!(matches!(
        lazy.claim(&req).await,
        Err(StoreError::Unavailable(_))
    ));
}
