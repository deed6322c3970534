//! The rules of a [`TransactionalStore`] (dedup in the handler's own transaction), and the
//! edge cases every table-backed store must survive, as tests.
//!
//! The suite knows no SQL: a store crate's test file implements [`Business`] for its
//! dialect (a business table, a row written through the transaction's connection, a count of
//! rows) and runs every rule with [`tx_conformance!`](crate::tx_conformance). Stores with a
//! server also implement [`Server`] for the rules about lost connections and closed ports.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use idemq_core::adapter::HandlerFuture;
use idemq_core::store::TransactionalStore;
use idemq_core::time::now_ms;
use idemq_core::{
    Claim, ClaimRequest, Engine, EngineConfig, EngineError, Envelope, Fingerprint, IdempotencyKey,
    KeyError, KeyStrategy, Outcome, RecordKey, Scope, State, Store, StoreError,
};
use tokio::sync::oneshot;

/// What one pass of a store's sweeper did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepCounts {
    /// Rows deleted.
    pub deleted: u64,
    /// `DELETE` statements run.
    pub batches: u64,
    /// Batches that failed.
    pub errors: u64,
}

/// The dialect side of the suite: a business table next to the store's records, and the few
/// store operations that are not part of the [`TransactionalStore`] trait.
///
/// One value stands for one test's slice of the business table (a fresh table, or a fresh
/// run id in a shared one), so tests can share a server. Only the futures a handler awaits
/// must be `Send`; the others run on the test's own task.
pub trait Business: Sized + Send + Sync + 'static {
    /// The store under test.
    type Store: TransactionalStore + Clone;

    /// The error of the business writes, returned by handlers.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Prepares an empty slice of a business table on `store`'s database.
    fn prepare(store: &Self::Store) -> impl Future<Output = Self>;

    /// Writes the business row `serial` through the handler's transaction.
    fn insert(
        &self,
        conn: &mut <Self::Store as TransactionalStore>::Conn,
        serial: &str,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Counts the committed business rows of this slice.
    fn rows(&self) -> impl Future<Output = i64>;

    /// An error a handler fails with.
    fn failure() -> Self::Error;

    /// Another store on the same database, standing for another process.
    fn reopen(store: &Self::Store) -> impl Future<Output = Self::Store>;

    /// A store on the same database keeping its records in `table`, created if missing;
    /// an invalid name must be refused with [`StoreError::Config`].
    fn with_table(
        store: &Self::Store,
        table: &str,
    ) -> impl Future<Output = Result<Self::Store, StoreError>>;

    /// The store with its result limit set to `max` bytes.
    fn with_max_result_bytes(store: Self::Store, max: usize) -> Self::Store;

    /// Counts the rows of the store's table, expired ones included, in `scope` or in all.
    fn records(store: &Self::Store, scope: Option<&Scope>) -> impl Future<Output = i64>;

    /// Runs one pass of the store's sweeper, deleting at most `batch` rows per statement.
    fn sweep_pass(store: &Self::Store, batch: u64) -> impl Future<Output = SweepCounts>;
}

/// The server side of the suite, for stores talking to a database server.
pub trait Server: Business {
    /// Ends the server session behind `conn` from another session, as a lost connection
    /// would.
    fn kill_session(
        &self,
        store: &Self::Store,
        conn: &mut <Self::Store as TransactionalStore>::Conn,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// A store pointed at a port where nothing listens, failing fast.
    fn closed_port() -> Self::Store;
}

fn key(k: &str) -> IdempotencyKey {
    IdempotencyKey::new(k).unwrap()
}

/// A scope no other test uses.
fn fresh_scope(prefix: &str) -> Scope {
    Scope::new(format!("{prefix}/{}", uuid::Uuid::new_v4().simple())).unwrap()
}

fn request(key: RecordKey, lease: Duration) -> ClaimRequest {
    ClaimRequest {
        key,
        fingerprint: None,
        lease,
        retention: lease,
    }
}

/// A store, its business slice and a fresh scope: what every rule starts from.
struct Fixture<B: Business> {
    store: B::Store,
    business: Arc<B>,
    cfg: EngineConfig,
}

impl<B: Business> Fixture<B> {
    async fn new(store: B::Store) -> Self {
        let business = Arc::new(B::prepare(&store).await);
        Self {
            store,
            business,
            cfg: EngineConfig::new(fresh_scope("pay")),
        }
    }

    fn record_key(&self, k: &str) -> RecordKey {
        RecordKey::new(self.cfg.scope.clone(), key(k))
    }

    /// The idempotent payment on `store`: one business row per serial, written in the dedup
    /// transaction; the result is `paid <serial>`.
    fn pay_on<'a>(
        &'a self,
        store: &'a B::Store,
        serial: &str,
        fingerprint: Option<Fingerprint>,
    ) -> impl Future<Output = Result<Outcome<B::Error>, EngineError>> + Send + 'a {
        let (b, s) = (self.business.clone(), serial.to_owned());
        store.run_in_tx(&self.cfg, key(serial), fingerprint, move |tx| {
            boxed(async move {
                b.insert(tx, &s).await?;
                Ok(format!("paid {s}"))
            })
        })
    }

    async fn pay(&self, serial: &str) -> Outcome<B::Error> {
        self.pay_on(&self.store, serial, None).await.unwrap()
    }

    /// Asserts the work left nothing, then that a redelivery applies once, as a first
    /// attempt, and the next is a duplicate.
    async fn assert_rolled_back_then_applies_once(&self, serial: &str) {
        assert_eq!(self.business.rows().await, 0, "a killed run left a row");
        assert!(
            self.store
                .get(&self.record_key(serial))
                .await
                .unwrap()
                .is_none(),
            "a killed run left its claim"
        );
        let out = self.pay(serial).await;
        assert!(
            matches!(out, Outcome::Processed { attempt: 1, .. }),
            "{out:?}"
        );
        let out = self.pay(serial).await;
        assert!(matches!(out, Outcome::Duplicate { .. }), "{out:?}");
        assert_eq!(self.business.rows().await, 1);
    }
}

fn boxed<'t, T, E>(f: impl Future<Output = Result<T, E>> + Send + 't) -> HandlerFuture<'t, T, E> {
    Box::pin(f)
}

/// The first run commits the row with the `CONSUMED` record; duplicates skip the handler and
/// get the stored result.
pub async fn first_run_commits_and_duplicates_get_the_stored_result<B: Business>(store: B::Store) {
    let f = Fixture::<B>::new(store).await;
    let out = f.pay("p-1").await;
    assert!(
        matches!(&out, Outcome::Processed { result: Some(r), attempt: 1, protected: true } if r == "paid p-1"),
        "{out:?}"
    );
    for _ in 0..2 {
        let out = f.pay("p-1").await;
        assert!(
            matches!(&out, Outcome::Duplicate { result: Some(r) } if r == "paid p-1"),
            "{out:?}"
        );
    }
    assert_eq!(f.business.rows().await, 1);
    let rec = f.store.get(&f.record_key("p-1")).await.unwrap().unwrap();
    assert_eq!(rec.state, State::Consumed);
}

/// A handler error rolls back its business write and the claim; the redelivery applies once.
pub async fn a_handler_error_rolls_back_the_effect_and_the_claim<B: Business>(store: B::Store) {
    let f = Fixture::<B>::new(store).await;
    let b = f.business.clone();
    let out = f
        .store
        .run_in_tx(&f.cfg, key("p-2"), None, move |tx| {
            boxed(async move {
                b.insert(tx, "p-2").await?;
                Err::<(), _>(B::failure())
            })
        })
        .await
        .unwrap();
    assert!(matches!(out, Outcome::Failed { attempt: 1, .. }), "{out:?}");
    f.assert_rolled_back_then_applies_once("p-2").await;
}

/// Kills the task while its handler waits, before or after the handler's business write.
async fn abort_in_handler<B: Business>(f: &Fixture<B>, serial: &str, write_first: bool) {
    let (started_tx, started_rx) = oneshot::channel();
    let (store, cfg, b, s) = (
        f.store.clone(),
        f.cfg.clone(),
        f.business.clone(),
        serial.to_owned(),
    );
    let task = tokio::spawn(async move {
        store
            .run_in_tx(&cfg, key(&s), None, move |tx| {
                boxed(async move {
                    if write_first {
                        b.insert(tx, &s).await?;
                    }
                    started_tx.send(()).unwrap();
                    std::future::pending::<()>().await;
                    Ok::<_, B::Error>(())
                })
            })
            .await
            .map(drop)
    });
    started_rx.await.unwrap();
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
}

/// A task killed after the claim, before the handler writes, leaves nothing.
pub async fn killed_after_the_claim_before_the_handler_writes_leaves_nothing<B: Business>(
    store: B::Store,
) {
    let f = Fixture::<B>::new(store).await;
    abort_in_handler(&f, "p-3", false).await;
    f.assert_rolled_back_then_applies_once("p-3").await;
}

/// A task killed after the business write, before the commit, leaves nothing.
pub async fn killed_after_the_business_write_leaves_nothing<B: Business>(store: B::Store) {
    let f = Fixture::<B>::new(store).await;
    abort_in_handler(&f, "p-4", true).await;
    f.assert_rolled_back_then_applies_once("p-4").await;
}

/// Two kills on one key, before and after the write, leave nothing; the redelivery is a
/// first attempt.
pub async fn repeated_kills_leave_nothing<B: Business>(store: B::Store) {
    let f = Fixture::<B>::new(store).await;
    abort_in_handler(&f, "p-10", false).await;
    abort_in_handler(&f, "p-10", true).await;
    f.assert_rolled_back_then_applies_once("p-10").await;
}

/// A `run_in_tx` future dropped inside the handler, after its write, leaves nothing.
pub async fn a_dropped_future_leaves_nothing<B: Business>(store: B::Store) {
    let f = Fixture::<B>::new(store).await;
    let (b, (written_tx, written_rx)) = (f.business.clone(), oneshot::channel());
    let run = f.store.run_in_tx(&f.cfg, key("p-5"), None, move |tx| {
        boxed(async move {
            b.insert(tx, "p-5").await?;
            written_tx.send(()).unwrap();
            std::future::pending::<()>().await;
            Ok::<_, B::Error>(())
        })
    });
    // The future is dropped as soon as the handler has written.
    tokio::select! {
        out = run => panic!("the handler cannot finish: {out:?}"),
        _ = written_rx => {}
    }
    f.assert_rolled_back_then_applies_once("p-5").await;
}

/// 32 concurrent deliveries of one key, through two stores (two processes), apply it once;
/// the others are duplicates with the first one's result.
pub async fn concurrent_duplicates_apply_once<B: Business>(store: B::Store) {
    let other = B::reopen(&store).await;
    let f = Arc::new(Fixture::<B>::new(store).await);
    let tasks = (0..32).map(|i| {
        let (f, other) = (f.clone(), other.clone());
        tokio::spawn(async move {
            let s = if i % 2 == 0 { &f.store } else { &other };
            f.pay_on(s, "p-7", Some(Fingerprint::of(b"500")))
                .await
                .unwrap()
        })
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
    assert_eq!(f.business.rows().await, 1);
}

/// A result over the store's limit (the tighter of the store's and the config's) is refused
/// with a typed error and rolls everything back; so is one given to `complete`.
pub async fn an_oversized_result_is_refused_and_nothing_is_written<B: Business>(store: B::Store) {
    let mut f = Fixture::<B>::new(store).await;
    f.store = B::with_max_result_bytes(f.store, 1024 * 1024);
    f.cfg = f.cfg.max_result_bytes(8 * 1024 * 1024);
    let b = f.business.clone();
    let out = f
        .store
        .run_in_tx(&f.cfg, key("p-8"), None, move |tx| {
            boxed(async move {
                b.insert(tx, "p-8").await?;
                Ok::<_, B::Error>(vec![1u8; 2 * 1024 * 1024])
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

    // The plain store path refuses it too.
    let k = f.record_key("p-8-plain");
    let Claim::Acquired { token, .. } = f
        .store
        .claim(&request(k.clone(), Duration::from_secs(60)))
        .await
        .unwrap()
    else {
        panic!("not acquired")
    };
    let refused = f
        .store
        .complete(
            &k,
            token,
            Some(&[0; 2 * 1024 * 1024]),
            Duration::from_secs(60),
        )
        .await;
    assert!(
        matches!(refused, Err(StoreError::ResultTooLarge { .. })),
        "{refused:?}"
    );
}

/// Another payload under a paid serial is a conflict; the same payload is a duplicate.
pub async fn another_payload_under_a_paid_serial_is_a_conflict<B: Business>(store: B::Store) {
    let f = Fixture::<B>::new(store).await;
    let run = |payload: &'static [u8]| f.pay_on(&f.store, "p-9", Some(Fingerprint::of(payload)));
    let out = run(b"500").await.unwrap();
    assert!(matches!(out, Outcome::Processed { .. }), "{out:?}");
    let out = run(b"900").await.unwrap();
    assert!(
        matches!(out, Outcome::Conflict { existing, .. } if existing == Fingerprint::of(b"500")),
        "{out:?}"
    );
    let out = run(b"500").await.unwrap();
    assert!(matches!(out, Outcome::Duplicate { .. }), "{out:?}");
    assert_eq!(f.business.rows().await, 1);
}

/// Keys with quotes, SQL, NUL bytes and a megabyte of text are data, through the engine and
/// through `run_in_tx`; hostile scopes and table names are refused before any SQL is built.
pub async fn hostile_keys_are_stored_as_data_and_hostile_names_are_refused<B: Business>(
    store: B::Store,
) {
    let scope = fresh_scope("edge");
    let mega = vec![b'k'; 1024 * 1024];
    let mega_quotes = b"';\"--".repeat(200_000);
    let raws: Vec<&[u8]> = vec![
        b"it's",
        b"a\"b",
        b"x'; DROP TABLE idemq_records; --",
        b"\\'; SELECT SLEEP(10); --",
        b"\\'; SELECT pg_sleep(10); --",
        b"a\0b",
        b"\0\0\0",
        &mega,
        &mega_quotes,
    ];
    let engine = Engine::new(
        store.clone(),
        EngineConfig::new(scope.clone()),
        KeyStrategy::<Envelope>::Header("id".into()),
    );
    for raw in &raws {
        let msg = Envelope::new(&b"p"[..]).with_header("id", raw.to_vec());
        let out = engine
            .run(&msg, || async { Ok::<_, std::io::Error>("ok") })
            .await
            .unwrap();
        assert!(matches!(out, Outcome::Processed { .. }), "{out:?}");
        let key = IdempotencyKey::from_bytes(raw).unwrap();
        assert!(key.as_str().len() <= 200, "the core normalises long keys");
        let rec = store
            .get(&RecordKey::new(scope.clone(), key))
            .await
            .unwrap();
        assert!(rec.is_some(), "{:?} was lost", &raw[..raw.len().min(16)]);
        // The same key through the transactional path is a duplicate.
        let out = store
            .run_in_tx(
                engine.config(),
                IdempotencyKey::from_bytes(raw).unwrap(),
                None,
                |_tx| boxed(async { Ok::<_, std::io::Error>(()) }),
            )
            .await
            .unwrap();
        assert!(matches!(out, Outcome::Duplicate { .. }), "{out:?}");
    }
    assert_eq!(
        store.stats(&scope).await.unwrap().consumed,
        raws.len() as u64,
        "keys collided"
    );

    // Scopes are validated by the core before any store sees them.
    let long_scope = "s".repeat(1024 * 1024);
    for bad in ["a'b", "a;b", "a\0b", "a\"b", long_scope.as_str()] {
        assert!(matches!(Scope::new(bad), Err(KeyError::InvalidScope(_))));
    }
    // Table names are validated before any SQL is built.
    for bad in ["t; DROP TABLE x", "t'", "t\0", "schema.t", ""] {
        let out = B::with_table(&store, bad).await;
        assert!(matches!(out, Err(StoreError::Config(_))), "{bad:?}");
    }
}

/// A result over the limit is refused with its size, never truncated; one at the limit
/// round-trips byte for byte.
pub async fn oversized_results_are_refused_not_truncated<B: Business>(store: B::Store) {
    let store = B::with_max_result_bytes(store, 2 * 1024 * 1024);
    let lease = Duration::from_secs(60);
    let big = RecordKey::new(fresh_scope("edge"), key("big"));
    let Claim::Acquired { token, .. } = store.claim(&request(big.clone(), lease)).await.unwrap()
    else {
        panic!("not acquired")
    };
    let over = vec![7u8; 2 * 1024 * 1024 + 1];
    let refused = store.complete(&big, token, Some(&over), lease).await;
    assert!(
        matches!(refused, Err(StoreError::ResultTooLarge { size, max }) if size == over.len() && max == 2 * 1024 * 1024),
        "{refused:?}"
    );
    let fits: Vec<u8> = (0..2 * 1024 * 1024).map(|i| (i % 253) as u8).collect();
    store
        .complete(&big, token, Some(&fits), lease)
        .await
        .unwrap();
    let rec = store.get(&big).await.unwrap().unwrap();
    assert_eq!(rec.result.as_deref(), Some(&fits[..]));
}

/// The sweeper deletes expired rows in batches of the size asked, all of them and nothing
/// else: a live record stays.
pub async fn the_sweeper_deletes_expired_rows_in_small_batches<B: Business>(store: B::Store) {
    // A table of its own, so no other test's rows are swept meanwhile.
    let store = B::with_table(&store, "idemq_sweep_test").await.unwrap();
    let scope = fresh_scope("sweep");
    for i in 0..25 {
        let k = RecordKey::new(scope.clone(), key(&format!("old-{i}")));
        store
            .claim(&request(k, Duration::from_millis(1)))
            .await
            .unwrap();
    }
    let live = RecordKey::new(scope.clone(), key("live"));
    store
        .claim(&request(live.clone(), Duration::from_secs(60)))
        .await
        .unwrap();
    // Waiting on time: the 25 leases must run out.
    let deadline = now_ms() + 20;
    while now_ms() <= deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(B::records(&store, Some(&scope)).await, 26);
    let before = B::records(&store, None).await;

    let swept = B::sweep_pass(&store, 10).await;
    assert_eq!(swept.errors, 0, "{swept:?}");
    assert!(swept.deleted >= 25, "{swept:?}");
    assert!(
        swept.batches >= 3,
        "one long delete instead of batches: {swept:?}"
    );
    // Rows of earlier runs may be swept too, but only what was deleted is gone.
    let after = B::records(&store, None).await;
    assert_eq!(before - after, swept.deleted as i64, "{swept:?}");
    assert_eq!(
        B::records(&store, Some(&scope)).await,
        1,
        "only the live record stays"
    );
    assert!(store.get(&live).await.unwrap().is_some());
}

/// The server session lost after the business write (the handler returns `Ok`) answers
/// unavailable and leaves nothing: the consumed mark and the commit never happen.
pub async fn a_connection_lost_before_the_commit_leaves_nothing<B: Server>(store: B::Store) {
    let f = Fixture::<B>::new(store).await;
    let (b, s) = (f.business.clone(), f.store.clone());
    let out = f
        .store
        .run_in_tx(&f.cfg, key("p-6"), None, move |tx| {
            boxed(async move {
                b.insert(tx, "p-6").await?;
                b.kill_session(&s, tx).await?;
                Ok::<_, B::Error>(())
            })
        })
        .await;
    assert!(
        matches!(out, Err(EngineError::Store(StoreError::Unavailable(_)))),
        "{out:?}"
    );
    f.assert_rolled_back_then_applies_once("p-6").await;
}

/// A server that does not listen answers [`StoreError::Unavailable`] within seconds.
pub async fn a_closed_port_answers_unavailable_promptly<B: Server>() {
    let store = B::closed_port();
    let k = RecordKey::new(fresh_scope("edge"), key("k"));
    let started = Instant::now();
    let out = store.claim(&request(k, Duration::from_secs(1))).await;
    assert!(matches!(out, Err(StoreError::Unavailable(_))), "{out:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}
