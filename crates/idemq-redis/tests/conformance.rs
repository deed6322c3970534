//! The Redis store against the shared conformance suite, on one node (127.0.0.1:6379) and on
//! a 3-node Redis Cluster (127.0.0.1:17000-17002, started by `scripts/redis-cluster`), plus
//! the Redis-specific behaviour: batches over many slots, expiry in Redis, script reloads.
//!
//! An unreachable server fails these tests with a message naming it; they never skip.

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use idemq_conformance::rules::fresh_scope;
use idemq_core::{
    Claim, ClaimRequest, FencingToken, Fingerprint, IdempotencyKey, RecordKey, Scope, State, Store,
    StoreError,
};
use idemq_redis::{Completion, HashTag, RedisStore};

const SINGLE: &str = "redis://127.0.0.1:6379";
const CLUSTER: [&str; 3] = [
    "redis://127.0.0.1:17000",
    "redis://127.0.0.1:17001",
    "redis://127.0.0.1:17002",
];
/// Nothing listens here.
const CLOSED: &str = "redis://127.0.0.1:1";

/// Generous: the suite's stress tests load two cores with debug builds and four servers.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

async fn single() -> RedisStore {
    RedisStore::builder()
        .response_timeout(RESPONSE_TIMEOUT)
        .connect(SINGLE)
        .await
        .unwrap_or_else(|e| panic!("Redis at 127.0.0.1:6379 is unreachable: {e}"))
}

async fn cluster(tag: HashTag) -> RedisStore {
    RedisStore::builder()
        .hash_tag(tag)
        .response_timeout(RESPONSE_TIMEOUT)
        .connect_cluster(&CLUSTER)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "Redis Cluster at 127.0.0.1:17000-17002 is unreachable ({e}): \
                 start it with scripts/redis-cluster"
            )
        })
}

mod single {
    use super::*;
    idemq_conformance::store_conformance! {
        store: single(),
        unreachable: async { RedisStore::connect_lazy(CLOSED).unwrap() },
    }
}

mod cluster {
    use super::*;
    idemq_conformance::store_conformance! {
        store: cluster(HashTag::Scope),
        unreachable: async { RedisStore::connect_cluster_lazy(&[CLOSED]).unwrap() },
    }
}

/// The whole suite again with every key its own hash tag: scopes spread over all slots.
mod cluster_key_tags {
    use super::*;
    idemq_conformance::store_conformance! {
        store: cluster(HashTag::Key),
        unreachable: async {
            RedisStore::builder().hash_tag(HashTag::Key).connect_cluster_lazy(&[CLOSED]).unwrap()
        },
    }
}

fn key(scope: &Scope, k: &str) -> RecordKey {
    RecordKey::new(scope.clone(), IdempotencyKey::new(k).unwrap())
}

fn req(key: RecordKey, payload: &[u8]) -> ClaimRequest {
    ClaimRequest {
        key,
        fingerprint: Some(Fingerprint::of(payload)),
        lease: Duration::from_secs(60),
        retention: Duration::from_secs(600),
    }
}

fn token(c: &Claim) -> FencingToken {
    match c {
        Claim::Acquired { token, .. } => *token,
        other => panic!("expected Acquired, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_claim_spanning_many_slots_answers_every_key() {
    let store = cluster(HashTag::Key).await;
    let scope = fresh_scope();
    let keys: Vec<RecordKey> = (0..1000).map(|i| key(&scope, &format!("m{i}"))).collect();
    let slots: HashSet<_> = keys
        .iter()
        .map(|k| redis::cluster_routing::Slot::for_key(store.redis_key(k)))
        .collect();
    assert!(slots.len() > 900, "only {} slots", slots.len());

    // 0..100 done with a result, 100..200 in flight, 200..300 in flight for another payload.
    let setup: Vec<ClaimRequest> = (0..300)
        .map(|i| req(keys[i].clone(), if i < 200 { b"A" } else { b"other" }))
        .collect();
    let first = store.claim_batch(&setup).await.unwrap();
    let results: Vec<String> = (0..100).map(|i| format!("r{i}")).collect();
    let done: Vec<Completion<'_>> = (0..100)
        .map(|i| Completion {
            key: &keys[i],
            token: token(&first[i]),
            result: Some(results[i].as_bytes()),
            retention: Duration::from_secs(600),
        })
        .collect();
    assert!(store
        .complete_batch(&done)
        .await
        .unwrap()
        .iter()
        .all(Result::is_ok));

    let reqs: Vec<ClaimRequest> = keys.iter().map(|k| req(k.clone(), b"A")).collect();
    let claims = store.claim_batch(&reqs).await.unwrap();
    assert_eq!(claims.len(), 1000);
    for (i, c) in claims.iter().enumerate() {
        match i {
            0..100 => assert_eq!(
                c,
                &Claim::Done {
                    result: Some(Bytes::from(results[i].clone()))
                },
                "key {i}"
            ),
            100..200 => assert!(matches!(c, Claim::InProgress { .. }), "key {i}: {c:?}"),
            200..300 => assert_eq!(
                c,
                &Claim::Conflict {
                    existing: Fingerprint::of(b"other")
                },
                "key {i}"
            ),
            _ => assert!(
                matches!(
                    c,
                    Claim::Acquired {
                        token: FencingToken(1),
                        attempt: 1,
                        takeover: false
                    }
                ),
                "key {i}: {c:?}"
            ),
        }
    }
    let stats = store.stats(&scope).await.unwrap();
    assert_eq!((stats.consumed, stats.consuming), (100, 900));
    assert_eq!(store.purge(&scope).await.unwrap(), 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_stores_answer_unavailable_without_hanging() {
    let stores = [
        RedisStore::connect_lazy(CLOSED).unwrap(),
        RedisStore::connect_cluster_lazy(&[CLOSED]).unwrap(),
    ];
    for store in stores {
        let r = req(key(&fresh_scope(), "k"), b"p");
        for _ in 0..2 {
            let out = tokio::time::timeout(Duration::from_secs(10), store.claim(&r))
                .await
                .unwrap_or_else(|_| panic!("{store:?} hung on an unreachable server"));
            assert!(matches!(out, Err(StoreError::Unavailable(_))), "{out:?}");
        }
    }
    assert!(RedisStore::connect(CLOSED).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_are_strings_redis_drops_at_their_expiry() {
    let store = single().await;
    let k = key(&fresh_scope(), "h");
    let t = token(&store.claim(&req(k.clone(), b"p")).await.unwrap());
    // Binary results survive, whatever their bytes.
    let result = [0, 255, 1, b'\r', b'\n', b'n', b'r'];
    store
        .complete(&k, t, Some(&result), Duration::from_secs(3600))
        .await
        .unwrap();
    let rec = store.get(&k).await.unwrap().unwrap();
    assert_eq!(rec.state, State::Consumed);
    assert_eq!(rec.result.as_deref(), Some(&result[..]));
    assert_eq!(rec.fingerprint, Some(Fingerprint::of(b"p")));

    let mut raw = redis::Client::open(SINGLE)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let name = store.redis_key(&k);
    assert!(name.starts_with("idemq:{"), "{name}");
    let kind: String = redis::cmd("TYPE")
        .arg(&name)
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(kind, "string");
    let at: i64 = redis::cmd("PEXPIRETIME")
        .arg(&name)
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(at, rec.expires_at);
    let value: Vec<u8> = redis::cmd("GET")
        .arg(&name)
        .query_async(&mut raw)
        .await
        .unwrap();
    // The state at byte 65, the result last: see the record layout in RedisStore's docs.
    assert_eq!(value[65], b'D');
    assert!(value.ends_with(&result), "{value:?}");

    // A value that is not a record is reported as corrupt, not misread.
    let _: () = redis::cmd("SET")
        .arg(&name)
        .arg("D-not-a-record")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(matches!(store.get(&k).await, Err(StoreError::Corrupt(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefixes_are_validated_and_used() {
    for bad in ["", "has space", "{tag}", "a*", &"p".repeat(65)] {
        let out = RedisStore::builder().prefix(bad).connect_lazy(SINGLE);
        assert!(
            matches!(out, Err(StoreError::Config(_))),
            "{bad:?}: {out:?}"
        );
    }
    let store = RedisStore::builder()
        .prefix("idemq-test.v1:x")
        .connect(SINGLE)
        .await
        .unwrap();
    let scope = fresh_scope();
    let k = key(&scope, "k");
    assert!(store.redis_key(&k).starts_with("idemq-test.v1:x:{"));
    store.claim(&req(k.clone(), b"p")).await.unwrap();
    // Another prefix is another namespace.
    let plain = single().await;
    assert!(plain.get(&k).await.unwrap().is_none());
    assert_eq!(store.purge(&scope).await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complete_batch_refuses_each_stale_or_oversized_completion() {
    let store = RedisStore::builder()
        .max_result_bytes(8)
        .connect(SINGLE)
        .await
        .unwrap();
    let scope = fresh_scope();
    let keys: Vec<RecordKey> = (0..3).map(|i| key(&scope, &format!("k{i}"))).collect();
    let reqs: Vec<ClaimRequest> = keys.iter().map(|k| req(k.clone(), b"p")).collect();
    let claims = store.claim_batch(&reqs).await.unwrap();
    let c = |i: usize, token: FencingToken, result: &'static [u8]| Completion {
        key: &keys[i],
        token,
        result: Some(result),
        retention: Duration::from_secs(60),
    };
    let out = store
        .complete_batch(&[
            c(0, token(&claims[0]), b"ok"),
            c(1, FencingToken(token(&claims[1]).0 + 1), b"stale"),
            c(2, token(&claims[2]), b"far too large"),
        ])
        .await
        .unwrap();
    assert!(out[0].is_ok());
    assert!(
        matches!(out[1], Err(StoreError::LeaseLost { .. })),
        "{out:?}"
    );
    assert!(
        matches!(out[2], Err(StoreError::ResultTooLarge { size: 13, max: 8 })),
        "{out:?}"
    );
    assert_eq!(
        store.get(&keys[0]).await.unwrap().unwrap().state,
        State::Consumed
    );
    assert_eq!(
        store.get(&keys[1]).await.unwrap().unwrap().state,
        State::Consuming
    );
    assert!(store.complete_batch(&[]).await.unwrap().is_empty());
}

async fn complete_and_claim_chains_messages(store: RedisStore) {
    let scope = fresh_scope();
    let keys: Vec<RecordKey> = (0..20).map(|i| key(&scope, &format!("c{i}"))).collect();
    let mut held = token(&store.claim(&req(keys[0].clone(), b"p")).await.unwrap());
    for i in 1..keys.len() {
        let done = Completion {
            key: &keys[i - 1],
            token: held,
            result: Some(b"r"),
            retention: Duration::from_secs(60),
        };
        let (completed, next) = store
            .complete_and_claim(&done, &req(keys[i].clone(), b"p"))
            .await
            .unwrap();
        completed.unwrap();
        held = token(&next);
    }
    // A stale completion is refused while the claim beside it still answers.
    let stale = Completion {
        key: &keys[0],
        token: FencingToken(9),
        result: None,
        retention: Duration::from_secs(60),
    };
    let (completed, next) = store
        .complete_and_claim(&stale, &req(keys[1].clone(), b"p"))
        .await
        .unwrap();
    assert!(matches!(completed, Err(StoreError::LeaseLost { .. })));
    assert_eq!(
        next,
        Claim::Done {
            result: Some(Bytes::from_static(b"r"))
        }
    );
    let stats = store.stats(&scope).await.unwrap();
    assert_eq!((stats.consumed, stats.consuming), (19, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complete_and_claim_on_one_node() {
    complete_and_claim_chains_messages(single().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complete_and_claim_across_cluster_slots() {
    complete_and_claim_chains_messages(cluster(HashTag::Key).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_are_loaded_again_after_the_server_forgets_them() {
    let scope = fresh_scope();
    for store in [single().await, cluster(HashTag::Scope).await] {
        let flush = redis::cmd("SCRIPT").arg("FLUSH").clone();
        let mut raw: Vec<redis::aio::MultiplexedConnection> = Vec::new();
        let urls: &[&str] = if store.is_cluster() {
            &CLUSTER
        } else {
            &[SINGLE]
        };
        for u in urls {
            raw.push(
                redis::Client::open(*u)
                    .unwrap()
                    .get_multiplexed_async_connection()
                    .await
                    .unwrap(),
            );
        }
        for c in &mut raw {
            let _: () = flush.query_async(c).await.unwrap();
        }
        let k = key(&scope, if store.is_cluster() { "c" } else { "s" });
        let t = token(&store.claim(&req(k.clone(), b"p")).await.unwrap());
        for c in &mut raw {
            let _: () = flush.query_async(c).await.unwrap();
        }
        let done = Completion {
            key: &k,
            token: t,
            result: None,
            retention: Duration::from_secs(60),
        };
        let (completed, next) = store
            .complete_and_claim(&done, &req(key(&scope, "next"), b"p"))
            .await
            .unwrap();
        completed.unwrap();
        assert!(matches!(
            next,
            Claim::Acquired { .. } | Claim::InProgress { .. }
        ));
    }
}

/// A completion reads the record with GETEX, which moves its expiry; one that is refused or
/// repeated must put the expiry back, and a zero retention must not leave a husk behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_or_repeated_completions_keep_the_expiry() {
    let store = single().await;
    let mut raw = redis::Client::open(SINGLE)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let scope = fresh_scope();
    let expiry = async |raw: &mut redis::aio::MultiplexedConnection, k: &RecordKey| -> i64 {
        redis::cmd("PEXPIRETIME")
            .arg(store.redis_key(k))
            .query_async(raw)
            .await
            .unwrap()
    };

    // A stale token, alone and in a batch, with a retention that would move the expiry.
    let k = key(&scope, "live");
    let t = token(&store.claim(&req(k.clone(), b"p")).await.unwrap());
    let before = expiry(&mut raw, &k).await;
    let stale = FencingToken(t.0 + 1);
    let long = Duration::from_secs(86_400);
    assert!(matches!(
        store.complete(&k, stale, None, long).await,
        Err(StoreError::LeaseLost { .. })
    ));
    let out = store
        .complete_batch(&[Completion {
            key: &k,
            token: stale,
            result: Some(b"r"),
            retention: long,
        }])
        .await
        .unwrap();
    assert!(matches!(out[0], Err(StoreError::LeaseLost { .. })));
    assert_eq!(expiry(&mut raw, &k).await, before);
    assert_eq!(
        store.get(&k).await.unwrap().unwrap().state,
        State::Consuming
    );

    // A stale completion with a zero retention deletes nothing.
    assert!(store
        .complete(&k, stale, None, Duration::ZERO)
        .await
        .is_err());
    assert_eq!(expiry(&mut raw, &k).await, before);

    // Completed: a second completion with the same token is accepted and changes nothing.
    store
        .complete(&k, t, Some(b"first"), Duration::from_secs(600))
        .await
        .unwrap();
    let done = expiry(&mut raw, &k).await;
    store.complete(&k, t, Some(b"again"), long).await.unwrap();
    assert_eq!(expiry(&mut raw, &k).await, done);
    let rec = store.get(&k).await.unwrap().unwrap();
    assert_eq!(rec.result.as_deref(), Some(&b"first"[..]));
    assert_eq!(rec.expires_at, done);

    // A zero retention: completed and gone at once, with no key left in Redis.
    let z = key(&scope, "zero");
    let t = token(&store.claim(&req(z.clone(), b"p")).await.unwrap());
    store.complete(&z, t, None, Duration::ZERO).await.unwrap();
    assert!(store.get(&z).await.unwrap().is_none());
    let exists: i64 = redis::cmd("EXISTS")
        .arg(store.redis_key(&z))
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(exists, 0);
    assert!(matches!(
        store.claim(&req(z.clone(), b"other")).await.unwrap(),
        Claim::Acquired {
            attempt: 1,
            takeover: false,
            ..
        }
    ));
}

/// A batch call sends the lease and retention once, so batches mixing them are split into
/// calls; each key must still get its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_mixing_leases_retentions_and_results_keep_each() {
    for store in [single().await, cluster(HashTag::Key).await] {
        let scope = fresh_scope();
        let keys: Vec<RecordKey> = (0..6).map(|i| key(&scope, &format!("m{i}"))).collect();
        let secs = |i: usize| Duration::from_secs(60 * (i as u64 % 3 + 1));
        let reqs: Vec<ClaimRequest> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| ClaimRequest {
                lease: secs(i),
                fingerprint: (i % 2 == 0).then(|| Fingerprint::of(b"p")),
                ..req(k.clone(), b"p")
            })
            .collect();
        let claims = store.claim_batch(&reqs).await.unwrap();
        for (i, k) in keys.iter().enumerate() {
            let rec = store.get(k).await.unwrap().unwrap();
            assert_eq!(
                rec.lease_until - rec.created_at,
                60_000 * (i as i64 % 3 + 1)
            );
            assert_eq!(rec.fingerprint.is_some(), i % 2 == 0, "key {i}");
        }
        let results: Vec<Option<&[u8]>> = (0..6)
            .map(|i| (i % 2 == 1).then_some(&b"r\0\n"[..]))
            .collect();
        let done: Vec<Completion<'_>> = (0..6)
            .map(|i| Completion {
                key: &keys[i],
                token: token(&claims[i]),
                result: results[i],
                retention: secs(i + 1),
            })
            .collect();
        let out = store.complete_batch(&done).await.unwrap();
        assert!(out.iter().all(Result::is_ok), "{out:?}");
        for (i, k) in keys.iter().enumerate() {
            let rec = store.get(k).await.unwrap().unwrap();
            assert_eq!(rec.state, State::Consumed);
            assert_eq!(rec.result.as_deref(), results[i], "key {i}");
            assert_eq!(
                rec.expires_at - rec.updated_at,
                secs(i + 1).as_millis() as i64
            );
            // A payload other than the one claimed conflicts only where one was recorded.
            let again = store.claim(&req(k.clone(), b"other")).await.unwrap();
            if i % 2 == 0 {
                let existing = Fingerprint::of(b"p");
                assert_eq!(again, Claim::Conflict { existing }, "key {i}");
            } else {
                assert!(matches!(again, Claim::Done { .. }), "key {i}: {again:?}");
            }
        }
        store.purge(&scope).await.unwrap();
    }
}
