//! The throughput bench every SQL store runs, printed as one table:
//!
//! - transactions/s inserting one business row, alone and with its dedup row in the same
//!   transaction (`run_in_tx`), and the ratio;
//! - keys/s of `claim_batch` over 100 new keys, against a plain 100-row `INSERT`;
//! - messages/s of a whole batch: `claim_batch` of 100 new keys, then `complete_batch` of
//!   the 100 claims.
//!
//! A store's bench binary implements [`Dialect`] (its connection and its SQL) and calls
//! [`run`]. Only with the `bench` feature, which the stores enable as a dev-dependency.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use idemq_core::store::TransactionalStore;
use idemq_core::{
    Claim, ClaimRequest, Completion, EngineConfig, IdempotencyKey, RecordKey, Scope, Store,
};

/// Concurrent tasks per measurement.
pub const WORKERS: usize = 8;
/// How long each line is measured.
pub const PHASE: Duration = Duration::from_secs(6);
/// Keys per batch in the batch lines.
pub const BATCH: usize = 100;

/// What a store's bench supplies: a connected store and the business table's SQL.
///
/// The business table is `idemq_bench_rows (k text-like primary key, v bigint)`.
pub trait Dialect: 'static {
    /// The store measured.
    type Store: TransactionalStore + Clone;

    /// The database, for the heading (`PostgreSQL`).
    const NAME: &'static str;

    /// Connects the store and creates an empty business table, dropping an old one.
    fn setup() -> impl Future<Output = Self::Store>;

    /// Inserts the row `(k, v)` through a transaction's connection.
    fn insert(
        conn: &mut <Self::Store as TransactionalStore>::Conn,
        k: String,
        v: i64,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;

    /// Inserts the row `(k, v)` in a transaction of its own, on the store's pool but without
    /// the store.
    fn insert_alone(store: Self::Store, k: String, v: i64) -> impl Future<Output = ()> + Send;

    /// Inserts the rows `(k, 0)` in one statement.
    fn insert_many(store: Self::Store, keys: Vec<String>) -> impl Future<Output = ()> + Send;

    /// Drops the business table.
    fn teardown(store: &Self::Store) -> impl Future<Output = ()>;
}

/// Runs `op` from [`WORKERS`] tasks for [`PHASE`]; returns completed operations per second.
pub async fn measure<F, Fut>(op: F) -> f64
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

/// [`BATCH`] claims of new keys, named after the line, the worker and the iteration.
fn batch_of(scope: &Scope, line: &str, w: usize, i: u64) -> Vec<ClaimRequest> {
    (0..BATCH)
        .map(|n| ClaimRequest {
            key: RecordKey::new(
                scope.clone(),
                IdempotencyKey::new(format!("{line}-{w}-{i}-{n}")).unwrap(),
            ),
            fingerprint: None,
            lease: Duration::from_secs(60),
            retention: Duration::from_secs(3600),
        })
        .collect()
}

/// Measures every line for `D` and prints the table; cleans up after itself.
pub async fn run<D: Dialect>() {
    let store = D::setup().await;
    let run = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
    );
    let scope = Scope::new(format!("bench/{run}")).unwrap();
    let config = EngineConfig::new(scope.clone());

    let raw = {
        let store = store.clone();
        measure(move |w, i| D::insert_alone(store.clone(), format!("raw-{w}-{i}"), i as i64)).await
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
                        Box::pin(D::insert(tx, k, i as i64))
                    })
                    .await
                    .unwrap();
                assert!(out.is_ackable());
            }
        })
        .await
    };

    let raw_batch = {
        let store = store.clone();
        measure(move |w, i| {
            let keys = (0..BATCH).map(|n| format!("rb-{w}-{i}-{n}")).collect();
            D::insert_many(store.clone(), keys)
        })
        .await
            * BATCH as f64
    };

    let batch = {
        let (store, scope) = (store.clone(), scope.clone());
        measure(move |w, i| {
            let (store, reqs) = (store.clone(), batch_of(&scope, "b", w, i));
            async move {
                let claims = store.claim_batch(&reqs).await.unwrap();
                assert_eq!(claims.len(), BATCH);
            }
        })
        .await
            * BATCH as f64
    };

    let cycle = {
        let (store, scope) = (store.clone(), scope.clone());
        measure(move |w, i| {
            let (store, reqs) = (store.clone(), batch_of(&scope, "c", w, i));
            async move {
                let claims = store.claim_batch(&reqs).await.unwrap();
                let done: Vec<Completion<'_>> = reqs
                    .iter()
                    .zip(&claims)
                    .map(|(r, c)| match c {
                        Claim::Acquired { token, .. } => Completion {
                            key: &r.key,
                            token: *token,
                            result: Some(b"ok"),
                            retention: r.retention,
                        },
                        other => panic!("a new key answered {other:?}"),
                    })
                    .collect();
                for r in store.complete_batch(&done).await.unwrap() {
                    r.unwrap();
                }
            }
        })
        .await
            * BATCH as f64
    };

    println!(
        "{}, {WORKERS} workers, {} s per line",
        D::NAME,
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
    line(
        "claim_batch + complete_batch of 100 keys",
        format!("{cycle:.0} msgs/s"),
    );

    store.purge(&scope).await.unwrap();
    D::teardown(&store).await;
}
