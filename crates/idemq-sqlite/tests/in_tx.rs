//! `run_in_tx`: the claim, the handler's writes and the consumed mark commit together.

use std::sync::Arc;
use std::time::Duration;

use idemq_core::time::now_ms;
use idemq_core::{
    Claim, ClaimRequest, EngineConfig, EngineError, Fingerprint, IdempotencyKey, Outcome,
    RecordKey, Scope, State, Store, StoreError,
};
use idemq_sqlite::SqliteStore;
use sqlx::SqliteConnection;
use tokio::sync::oneshot;

async fn store() -> SqliteStore {
    let dir = tempfile::tempdir().expect("a temporary directory").keep();
    let url = format!("sqlite://{}", dir.join("idemq.db").display());
    let store = SqliteStore::connect(&url)
        .await
        .expect("open the SQLite file");
    sqlx::query("CREATE TABLE payments (serial TEXT PRIMARY KEY, cents INTEGER NOT NULL)")
        .execute(store.pool())
        .await
        .unwrap();
    store
}

fn config() -> EngineConfig {
    EngineConfig::new(Scope::new(format!("pay/{}", now_ms())).unwrap())
}

fn key(k: &str) -> IdempotencyKey {
    IdempotencyKey::new(k).unwrap()
}

async fn pay(conn: &mut SqliteConnection, serial: &str, cents: i64) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO payments (serial, cents) VALUES (?1, ?2)")
        .bind(serial)
        .bind(cents)
        .execute(conn)
        .await
        .map(drop)
}

async fn payments(store: &SqliteStore) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM payments")
        .fetch_one(store.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn first_run_commits_and_a_duplicate_gets_the_stored_result() {
    let store = store().await;
    let cfg = config();
    for round in 0..3 {
        let out = store
            .run_in_tx(&cfg, key("p-1"), None, |tx| {
                Box::pin(async move {
                    pay(tx, "p-1", 500).await?;
                    Ok::<_, sqlx::Error>("receipt-1")
                })
            })
            .await
            .unwrap();
        match (round, out) {
            (
                0,
                Outcome::Processed {
                    result,
                    attempt: 1,
                    protected: true,
                },
            ) => {
                assert_eq!(result.as_deref(), Some(&b"receipt-1"[..]))
            }
            (_, Outcome::Duplicate { result }) if round > 0 => {
                assert_eq!(result.as_deref(), Some(&b"receipt-1"[..]))
            }
            (_, other) => panic!("round {round}: {other:?}"),
        }
    }
    assert_eq!(payments(&store).await, 1);
    let rec = store
        .get(&RecordKey::new(cfg.scope.clone(), key("p-1")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rec.state, State::Consumed);
}

#[tokio::test]
async fn a_handler_error_rolls_back_the_effect_and_the_claim() {
    let store = store().await;
    let cfg = config();
    let out = store
        .run_in_tx(&cfg, key("p-2"), None, |tx| {
            Box::pin(async move {
                pay(tx, "p-2", 500).await?;
                Err::<(), _>(sqlx::Error::Protocol("injected failure".into()))
            })
        })
        .await
        .unwrap();
    assert!(matches!(out, Outcome::Failed { attempt: 1, .. }), "{out:?}");
    assert_eq!(payments(&store).await, 0);
    let k = RecordKey::new(cfg.scope.clone(), key("p-2"));
    assert!(store.get(&k).await.unwrap().is_none());
    let out = store
        .run_in_tx(&cfg, key("p-2"), None, |tx| {
            Box::pin(async move { pay(tx, "p-2", 500).await })
        })
        .await
        .unwrap();
    assert!(matches!(out, Outcome::Processed { .. }), "{out:?}");
    assert_eq!(payments(&store).await, 1);
}

#[tokio::test]
async fn an_aborted_run_leaves_nothing_and_the_redelivery_applies_once() {
    let store = store().await;
    let cfg = config();
    // Killed in the handler, once before and once after its business write.
    for write_first in [false, true] {
        let (started_tx, started_rx) = oneshot::channel();
        let task = {
            let (store, cfg) = (store.clone(), cfg.clone());
            tokio::spawn(async move {
                store
                    .run_in_tx(&cfg, key("p-3"), None, move |tx| {
                        Box::pin(async move {
                            if write_first {
                                pay(tx, "p-3", 700).await?;
                            }
                            started_tx.send(()).unwrap();
                            std::future::pending::<()>().await;
                            Ok::<_, sqlx::Error>(())
                        })
                    })
                    .await
            })
        };
        started_rx.await.unwrap();
        task.abort();
        assert!(task.await.unwrap_err().is_cancelled());
        assert_eq!(payments(&store).await, 0);
    }
    let out = store
        .run_in_tx(&cfg, key("p-3"), None, |tx| {
            Box::pin(async move { pay(tx, "p-3", 700).await })
        })
        .await
        .unwrap();
    assert!(
        matches!(out, Outcome::Processed { attempt: 1, .. }),
        "{out:?}"
    );
    assert_eq!(payments(&store).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_duplicates_across_two_stores_apply_once() {
    let store = store().await;
    // A second store on the same file stands for another process.
    let other = SqliteStore::connect(&format!(
        "sqlite://{}",
        store.pool().connect_options().get_filename().display()
    ))
    .await
    .unwrap();
    let cfg = config();
    let tasks = (0..16).map(|i| {
        let s = if i % 2 == 0 {
            store.clone()
        } else {
            other.clone()
        };
        let cfg = cfg.clone();
        tokio::spawn(async move {
            s.run_in_tx(&cfg, key("p-4"), Some(Fingerprint::of(b"500")), |tx| {
                Box::pin(async move { pay(tx, "p-4", 500).await })
            })
            .await
            .unwrap()
        })
    });
    let mut processed = 0;
    for t in tasks {
        match t.await.unwrap() {
            Outcome::Processed { .. } => processed += 1,
            Outcome::Duplicate { .. } => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(processed, 1);
    assert_eq!(payments(&store).await, 1);
}

#[tokio::test]
async fn an_oversized_result_is_refused_and_nothing_is_written() {
    let store = store().await.with_max_result_bytes(1024);
    let cfg = config();
    let out = store
        .run_in_tx(&cfg, key("p-5"), None, |tx| {
            Box::pin(async move {
                pay(tx, "p-5", 1).await?;
                Ok::<_, sqlx::Error>(vec![7u8; 1025])
            })
        })
        .await;
    assert!(
        matches!(
            out,
            Err(EngineError::Store(StoreError::ResultTooLarge {
                size: 1025,
                max: 1024
            }))
        ),
        "{out:?}"
    );
    assert_eq!(payments(&store).await, 0);
    // The plain store path refuses it too.
    let k = RecordKey::new(cfg.scope.clone(), key("p-6"));
    let req = ClaimRequest {
        key: k.clone(),
        fingerprint: None,
        lease: Duration::from_secs(60),
        retention: Duration::from_secs(60),
    };
    let Claim::Acquired { token, .. } = store.claim(&req).await.unwrap() else {
        panic!("not acquired")
    };
    let refused = store
        .complete(&k, token, Some(&[0; 2048]), Duration::from_secs(60))
        .await;
    assert!(
        matches!(refused, Err(StoreError::ResultTooLarge { .. })),
        "{refused:?}"
    );
}

#[tokio::test]
async fn the_sweeper_deletes_expired_rows_in_batches_and_keeps_live_ones() {
    let store = store().await;
    let scope = Scope::new("sweep").unwrap();
    let lease = Duration::from_millis(1);
    for i in 0..25 {
        let req = ClaimRequest {
            key: RecordKey::new(scope.clone(), key(&format!("old-{i}"))),
            fingerprint: None,
            lease,
            retention: lease,
        };
        store.claim(&req).await.unwrap();
    }
    let live = RecordKey::new(scope.clone(), key("live"));
    let req = ClaimRequest {
        key: live.clone(),
        fingerprint: None,
        lease: Duration::from_secs(60),
        retention: Duration::from_secs(60),
    };
    store.claim(&req).await.unwrap();
    let deadline = now_ms() + 5;
    while now_ms() <= deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut sweeper = store.spawn_sweeper(Duration::from_secs(3600), 10);
    let stats = sweeper.wait_passes(1).await;
    assert_eq!(stats.deleted, 25, "{stats:?}");
    assert!(stats.batches >= 3, "{stats:?}");
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM idemq_records")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(rows, 1);
    assert!(store.get(&live).await.unwrap().is_some());
    sweeper.stop().await;
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
