//! Throughput on the local MySQL or MariaDB, printed as one table:
//!
//! - transactions/s inserting one business row, alone and with its dedup row in the same
//!   transaction (`run_in_tx`), and the ratio;
//! - keys/s of `claim_batch` over 100 new keys, against a plain 100-row `INSERT`.
//!
//! `cargo bench -p idemq-mysql --bench throughput` (about 30 s).

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use idemq_core::{ClaimRequest, EngineConfig, IdempotencyKey, RecordKey, Scope, Store};
use idemq_mysql::MySqlStore;

const URL: &str = "mysql://root@127.0.0.1:3306/test";
const WORKERS: usize = 8;
const PHASE: Duration = Duration::from_secs(6);
const BATCH: usize = 100;

/// Runs `op` from `WORKERS` tasks for `PHASE`; returns completed operations per second.
async fn measure<F, Fut>(op: F) -> f64
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..WORKERS)
        .map(|w| {
            let (op, done) = (op.clone(), done.clone());
            tokio::spawn(async move {
                let mut i = 0;
                while started.elapsed() < PHASE {
                    op(w, i).await;
                    i += 1;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let store = MySqlStore::connect(URL).await.unwrap_or_else(|e| {
        panic!("MariaDB or MySQL at 127.0.0.1:3306 (root, db test) is required: {e}")
    });
    let pool = store.pool().clone();
    sqlx::raw_sql(
        "DROP TABLE IF EXISTS idemq_bench_rows;
         CREATE TABLE idemq_bench_rows (k VARCHAR(64) PRIMARY KEY, v BIGINT NOT NULL) ENGINE = InnoDB;",
    )
    .execute(&pool)
    .await
    .unwrap();
    let run = uuid::Uuid::new_v4().simple().to_string();
    let scope = Scope::new(format!("bench/{run}")).unwrap();
    let config = EngineConfig::new(scope.clone());

    let raw = {
        let pool = pool.clone();
        measure(move |w, i| {
            let pool = pool.clone();
            async move {
                let mut tx = pool.begin().await.unwrap();
                sqlx::query("INSERT INTO idemq_bench_rows (k, v) VALUES (?, ?)")
                    .bind(format!("raw-{w}-{i}"))
                    .bind(i as i64)
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                tx.commit().await.unwrap();
            }
        })
        .await
    };

    let deduped = {
        let (store, config) = (store.clone(), config.clone());
        measure(move |w, i| {
            let (store, config) = (store.clone(), config.clone());
            async move {
                let k = format!("tx-{w}-{i}");
                let key = IdempotencyKey::new(&k).unwrap();
                let out = store
                    .run_in_tx(&config, key, None, move |tx| {
                        Box::pin(async move {
                            sqlx::query("INSERT INTO idemq_bench_rows (k, v) VALUES (?, ?)")
                                .bind(k)
                                .bind(i as i64)
                                .execute(&mut *tx)
                                .await
                                .map(drop)
                        })
                    })
                    .await
                    .unwrap();
                assert!(out.is_ackable());
            }
        })
        .await
    };

    let raw_batch = {
        let pool = pool.clone();
        measure(move |w, i| {
            let pool = pool.clone();
            async move {
                let rows = vec!["(?, 0)"; BATCH].join(", ");
                let sql = format!("INSERT INTO idemq_bench_rows (k, v) VALUES {rows}");
                let mut q = sqlx::query(&sql);
                for n in 0..BATCH {
                    q = q.bind(format!("rb-{w}-{i}-{n}"));
                }
                q.execute(&pool).await.unwrap();
            }
        })
        .await
            * BATCH as f64
    };

    let batch = {
        let (store, scope) = (store.clone(), scope.clone());
        measure(move |w, i| {
            let (store, scope) = (store.clone(), scope.clone());
            async move {
                let reqs: Vec<ClaimRequest> = (0..BATCH)
                    .map(|n| ClaimRequest {
                        key: RecordKey::new(
                            scope.clone(),
                            IdempotencyKey::new(format!("b-{w}-{i}-{n}")).unwrap(),
                        ),
                        fingerprint: None,
                        lease: Duration::from_secs(60),
                        retention: Duration::from_secs(3600),
                    })
                    .collect();
                let claims = store.claim_batch(&reqs).await.unwrap();
                assert_eq!(claims.len(), BATCH);
            }
        })
        .await
            * BATCH as f64
    };

    println!(
        "MySQL/MariaDB, {WORKERS} workers, {} s per line",
        PHASE.as_secs()
    );
    let line = |what: &str, value: String| println!("  {what:<42}{value:>14}");
    line("insert a business row, alone", format!("{raw:.0} tx/s"));
    line(
        "same + dedup row in the tx (run_in_tx)",
        format!("{deduped:.0} tx/s"),
    );
    line("ratio run_in_tx / alone", format!("{:.2}", deduped / raw));
    line(
        "100-row INSERT in one statement (raw)",
        format!("{raw_batch:.0} rows/s"),
    );
    line("claim_batch of 100 new keys", format!("{batch:.0} msgs/s"));
    line(
        "ratio claim_batch / raw insert",
        format!("{:.2}", batch / raw_batch),
    );

    store.purge(&scope).await.unwrap();
    sqlx::query("DROP TABLE idemq_bench_rows")
        .execute(&pool)
        .await
        .unwrap();
}
