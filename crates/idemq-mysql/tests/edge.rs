//! Hostile input, the sweeper and an unreachable server.

use std::str::FromStr;
use std::time::{Duration, Instant};

use idemq_core::time::now_ms;
use idemq_core::{
    Claim, ClaimRequest, Engine, EngineConfig, Envelope, IdempotencyKey, KeyError, KeyStrategy,
    Outcome, RecordKey, Scope, Store, StoreError,
};
use idemq_mysql::MySqlStore;
use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};

const URL: &str = "mysql://root@127.0.0.1:3306/test";
const SERVER: &str = "MariaDB or MySQL at 127.0.0.1:3306 (root, db test)";

async fn store_on(table: &str) -> MySqlStore {
    let options = MySqlConnectOptions::from_str(URL).unwrap();
    MySqlStore::connect_with(options, table)
        .await
        .unwrap_or_else(|e| panic!("{SERVER} is required: {e}"))
}

fn scope() -> Scope {
    Scope::new(format!("edge/{}", uuid::Uuid::new_v4().simple())).unwrap()
}

fn request(key: RecordKey, lease: Duration) -> ClaimRequest {
    ClaimRequest {
        key,
        fingerprint: None,
        lease,
        retention: lease,
    }
}

async fn wait_until_past(deadline: i64) {
    while now_ms() <= deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn hostile_keys_are_stored_as_data_and_hostile_names_are_refused() {
    let store = store_on("idemq_records").await;
    let scope = scope();
    let mega = vec![b'k'; 1024 * 1024];
    let mega_quotes = b"';\"--".repeat(200_000);
    let raws: Vec<&[u8]> = vec![
        b"it's",
        b"a\"b",
        b"x'; DROP TABLE idemq_records; --",
        b"\\'; SELECT SLEEP(10); --",
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
                |_tx| Box::pin(async { Ok::<_, std::io::Error>(()) }),
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
    let options = MySqlConnectOptions::from_str(URL).unwrap();
    for bad in ["t; DROP TABLE x", "t'", "t\0", "schema.t", ""] {
        let out = MySqlStore::connect_with(options.clone(), bad).await;
        assert!(matches!(out, Err(StoreError::Config(_))), "{bad:?}");
    }
}

#[tokio::test]
async fn oversized_results_are_refused_not_truncated() {
    let store = store_on("idemq_records")
        .await
        .with_max_result_bytes(2 * 1024 * 1024);
    let scope = scope();
    let lease = Duration::from_secs(60);
    let big = RecordKey::new(scope.clone(), IdempotencyKey::new("big").unwrap());
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

#[tokio::test]
async fn the_sweeper_deletes_expired_rows_in_small_batches() {
    // A table of its own, so the counts are this test's alone.
    let store = store_on("idemq_sweep_test").await;
    let scope = scope();
    for i in 0..25 {
        let k = RecordKey::new(
            scope.clone(),
            IdempotencyKey::new(format!("old-{i}")).unwrap(),
        );
        store
            .claim(&request(k, Duration::from_millis(1)))
            .await
            .unwrap();
    }
    let live = RecordKey::new(scope.clone(), IdempotencyKey::new("live").unwrap());
    store
        .claim(&request(live.clone(), Duration::from_secs(60)))
        .await
        .unwrap();
    wait_until_past(now_ms() + 20).await;

    let mut sweeper = store.spawn_sweeper(Duration::from_secs(3600), 10);
    let stats = sweeper.wait_passes(1).await;
    sweeper.stop().await;
    assert!(stats.deleted >= 25, "{stats:?}");
    assert!(
        stats.batches >= 3,
        "one long delete instead of batches: {stats:?}"
    );
    assert_eq!(stats.errors, 0);
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM idemq_sweep_test WHERE scope = ?")
        .bind(scope.as_str().as_bytes())
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(left, 1, "only the live record stays");
    assert!(store.get(&live).await.unwrap().is_some());
}

#[tokio::test]
async fn a_closed_port_answers_unavailable_promptly() {
    let pool = MySqlPoolOptions::new()
        .acquire_timeout(Duration::from_millis(500))
        .connect_lazy("mysql://root@127.0.0.1:1/test")
        .unwrap();
    let store = MySqlStore::from_pool(pool, "idemq_records").unwrap();
    let k = RecordKey::new(scope(), IdempotencyKey::new("k").unwrap());
    let started = Instant::now();
    let out = store.claim(&request(k, Duration::from_secs(1))).await;
    assert!(matches!(out, Err(StoreError::Unavailable(_))), "{out:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}
