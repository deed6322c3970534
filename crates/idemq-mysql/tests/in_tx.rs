//! `run_in_tx`: the claim, the handler's writes and the consumed mark commit together, and
//! whatever kills the work before the commit leaves nothing behind.

use std::time::Duration;

use idemq_core::{
    EngineConfig, EngineError, Fingerprint, IdempotencyKey, Outcome, RecordKey, Scope, State,
    Store, StoreError,
};
use idemq_mysql::MySqlStore;
use sqlx::MySqlConnection;
use tokio::sync::oneshot;

const URL: &str = "mysql://root@127.0.0.1:3306/test";

/// A store and a run id in the business table.
struct Fixture {
    store: MySqlStore,
    /// The run id (named `table` as it stands for this test's slice of the table).
    table: String,
    cfg: EngineConfig,
}

async fn fixture() -> Fixture {
    let store = MySqlStore::connect(URL).await.unwrap_or_else(|e| {
        panic!("MariaDB or MySQL at 127.0.0.1:3306 (root, db test) is required: {e}")
    });
    // One business table for all runs; each fixture writes under its own run id.
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS idemq_test_payments \
         (run VARCHAR(64) NOT NULL, serial VARCHAR(64) NOT NULL, cents BIGINT NOT NULL, \
          PRIMARY KEY (run, serial)) ENGINE = InnoDB",
    )
    .execute(store.pool())
    .await
    .unwrap();
    let table = uuid::Uuid::new_v4().simple().to_string();
    let scope = Scope::new(format!("pay/{}", uuid::Uuid::new_v4().simple())).unwrap();
    Fixture {
        store,
        table,
        cfg: EngineConfig::new(scope),
    }
}

impl Fixture {
    async fn payments(&self) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM idemq_test_payments WHERE run = ?")
            .bind(&self.table)
            .fetch_one(self.store.pool())
            .await
            .unwrap()
    }

    fn record_key(&self, k: &str) -> RecordKey {
        RecordKey::new(self.cfg.scope.clone(), key(k))
    }

    /// The idempotent payment: one row per serial, written in the dedup transaction.
    async fn pay(&self, serial: &str) -> Result<Outcome<sqlx::Error>, EngineError> {
        let (table, serial_owned) = (self.table.clone(), serial.to_owned());
        self.store
            .run_in_tx(&self.cfg, key(serial), None, move |tx| {
                Box::pin(async move {
                    insert(tx, &table, &serial_owned).await?;
                    Ok::<_, sqlx::Error>(format!("paid {serial_owned}"))
                })
            })
            .await
    }

    /// Asserts the work left nothing, then that a redelivery applies once and the next is a
    /// duplicate.
    async fn assert_rolled_back_then_applies_once(&self, serial: &str) {
        assert_eq!(self.payments().await, 0, "a killed run left a payment");
        assert!(
            self.store
                .get(&self.record_key(serial))
                .await
                .unwrap()
                .is_none(),
            "a killed run left its claim"
        );
        let out = self.pay(serial).await.unwrap();
        assert!(matches!(out, Outcome::Processed { .. }), "{out:?}");
        let out = self.pay(serial).await.unwrap();
        assert!(matches!(out, Outcome::Duplicate { .. }), "{out:?}");
        assert_eq!(self.payments().await, 1);
    }
}

fn key(k: &str) -> IdempotencyKey {
    IdempotencyKey::new(k).unwrap()
}

async fn insert(conn: &mut MySqlConnection, run: &str, serial: &str) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO idemq_test_payments (run, serial, cents) VALUES (?, ?, 500)")
        .bind(run)
        .bind(serial)
        .execute(conn)
        .await
        .map(drop)
}

#[tokio::test]
async fn first_run_commits_and_duplicates_get_the_stored_result() {
    let f = fixture().await;
    let out = f.pay("p-1").await.unwrap();
    assert!(
        matches!(&out, Outcome::Processed { result: Some(r), attempt: 1, protected: true } if r == "paid p-1"),
        "{out:?}"
    );
    for _ in 0..2 {
        let out = f.pay("p-1").await.unwrap();
        assert!(
            matches!(&out, Outcome::Duplicate { result: Some(r) } if r == "paid p-1"),
            "{out:?}"
        );
    }
    assert_eq!(f.payments().await, 1);
    let rec = f.store.get(&f.record_key("p-1")).await.unwrap().unwrap();
    assert_eq!(rec.state, State::Consumed);
}

#[tokio::test]
async fn a_handler_error_rolls_back_the_effect_and_the_claim() {
    let f = fixture().await;
    let table = f.table.clone();
    let out = f
        .store
        .run_in_tx(&f.cfg, key("p-2"), None, move |tx| {
            Box::pin(async move {
                insert(tx, &table, "p-2").await?;
                Err::<(), _>(sqlx::Error::Protocol("injected failure".into()))
            })
        })
        .await
        .unwrap();
    assert!(matches!(out, Outcome::Failed { attempt: 1, .. }), "{out:?}");
    f.assert_rolled_back_then_applies_once("p-2").await;
}

/// Kills the task while its handler waits, before or after the handler's business write.
async fn abort_in_handler(f: &Fixture, serial: &str, write_first: bool) {
    let (started_tx, started_rx) = oneshot::channel();
    let (store, cfg, table, s) = (
        f.store.clone(),
        f.cfg.clone(),
        f.table.clone(),
        serial.to_owned(),
    );
    let task = tokio::spawn(async move {
        store
            .run_in_tx(&cfg, key(&s), None, move |tx| {
                Box::pin(async move {
                    if write_first {
                        insert(tx, &table, &s).await?;
                    }
                    started_tx.send(()).unwrap();
                    std::future::pending::<()>().await;
                    Ok::<_, sqlx::Error>(())
                })
            })
            .await
    });
    started_rx.await.unwrap();
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
}

#[tokio::test]
async fn killed_after_the_claim_before_the_handler_writes_leaves_nothing() {
    let f = fixture().await;
    abort_in_handler(&f, "p-3", false).await;
    f.assert_rolled_back_then_applies_once("p-3").await;
}

#[tokio::test]
async fn killed_after_the_business_write_leaves_nothing() {
    let f = fixture().await;
    abort_in_handler(&f, "p-4", true).await;
    f.assert_rolled_back_then_applies_once("p-4").await;
}

#[tokio::test]
async fn a_dropped_future_leaves_nothing() {
    let f = fixture().await;
    let table = f.table.clone();
    let run = f.store.run_in_tx(&f.cfg, key("p-5"), None, move |tx| {
        Box::pin(async move {
            insert(tx, &table, "p-5").await?;
            std::future::pending::<()>().await;
            Ok::<_, sqlx::Error>(())
        })
    });
    // The future is dropped when the timeout fires, inside the handler after its write.
    assert!(tokio::time::timeout(Duration::from_millis(300), run)
        .await
        .is_err());
    f.assert_rolled_back_then_applies_once("p-5").await;
}

#[tokio::test]
async fn a_connection_lost_before_the_commit_leaves_nothing() {
    let f = fixture().await;
    let (table, pool) = (f.table.clone(), f.store.pool().clone());
    let out = f
        .store
        .run_in_tx(&f.cfg, key("p-6"), None, move |tx| {
            Box::pin(async move {
                insert(tx, &table, "p-6").await?;
                // The server loses this session after the business write and the handler
                // returns Ok: the consumed mark and the commit never happen.
                let id: u64 = sqlx::query_scalar("SELECT CONNECTION_ID()")
                    .fetch_one(&mut *tx)
                    .await?;
                sqlx::raw_sql(&format!("KILL {id}")).execute(&pool).await?;
                Ok::<_, sqlx::Error>(())
            })
        })
        .await;
    assert!(
        matches!(out, Err(EngineError::Store(StoreError::Unavailable(_)))),
        "{out:?}"
    );
    f.assert_rolled_back_then_applies_once("p-6").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_duplicates_wait_on_the_unique_key_and_apply_once() {
    let f = std::sync::Arc::new(fixture().await);
    let tasks = (0..32).map(|_| {
        let f = f.clone();
        tokio::spawn(async move { f.pay("p-7").await.unwrap() })
    });
    let mut processed = 0;
    for t in futures::future::join_all(tasks).await {
        match t.unwrap() {
            Outcome::Processed { .. } => processed += 1,
            Outcome::Duplicate { result } => assert_eq!(result.as_deref(), Some(&b"paid p-7"[..])),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(processed, 1);
    assert_eq!(f.payments().await, 1);
}

#[tokio::test]
async fn an_oversized_result_is_refused_and_nothing_is_written() {
    let f = fixture().await;
    let store = f.store.clone().with_max_result_bytes(1024 * 1024);
    let cfg = f.cfg.clone().max_result_bytes(8 * 1024 * 1024);
    let table = f.table.clone();
    let out = store
        .run_in_tx(&cfg, key("p-8"), None, move |tx| {
            Box::pin(async move {
                insert(tx, &table, "p-8").await?;
                Ok::<_, sqlx::Error>(vec![1u8; 2 * 1024 * 1024])
            })
        })
        .await;
    assert!(
        matches!(
            out,
            Err(EngineError::Store(StoreError::ResultTooLarge {
                size: 2097152,
                max: 1048576
            }))
        ),
        "{out:?}"
    );
    f.assert_rolled_back_then_applies_once("p-8").await;
}

#[tokio::test]
async fn another_payload_under_a_paid_serial_is_a_conflict() {
    let f = fixture().await;
    let table = f.table.clone();
    let run = |payload: &'static [u8]| {
        let table = table.clone();
        f.store.run_in_tx(
            &f.cfg,
            key("p-9"),
            Some(Fingerprint::of(payload)),
            move |tx| Box::pin(async move { insert(tx, &table, "p-9").await }),
        )
    };
    assert!(matches!(
        run(b"500").await.unwrap(),
        Outcome::Processed { .. }
    ));
    assert!(matches!(run(b"900").await.unwrap(), Outcome::Conflict));
    assert!(matches!(
        run(b"500").await.unwrap(),
        Outcome::Duplicate { .. }
    ));
    assert_eq!(f.payments().await, 1);
}
