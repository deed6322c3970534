//! The tiering rules over two in-memory stores.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use idemq_conformance::Unreachable;
use idemq_core::store::{MemoryStore, ScopeStats, StoreError};
use idemq_core::time::UnixMillis;
use idemq_core::{
    Claim, ClaimRequest, Completion, FencingToken, Fingerprint, IdempotencyKey, Record, RecordKey,
    Scope, State, Store,
};
use idemq_tiered::TieredStore;

idemq_conformance::store_conformance! {
    store: async { TieredStore::new(MemoryStore::new(), MemoryStore::new()) },
    unreachable: async { TieredStore::new(MemoryStore::new(), Unreachable) },
}

/// With the cache down every rule still holds: the durable tier decides alone.
mod cache_down {
    use super::*;

    idemq_conformance::store_conformance! {
        store: async { TieredStore::new(Unreachable, MemoryStore::new()) },
        unreachable: async { TieredStore::new(Unreachable, Unreachable) },
    }
}

fn req(k: &str) -> ClaimRequest {
    ClaimRequest {
        key: RecordKey::new(
            Scope::new("tiers").unwrap(),
            IdempotencyKey::new(k).unwrap(),
        ),
        fingerprint: Some(Fingerprint::of(b"p")),
        lease: Duration::from_secs(60),
        retention: Duration::from_secs(60),
    }
}

#[tokio::test]
async fn completion_is_remembered_by_the_cache_and_a_cold_cache_refills() {
    let store = TieredStore::new(MemoryStore::new(), MemoryStore::new());
    let r = req("k");
    let Claim::Acquired { token, .. } = store.claim(&r).await.unwrap() else {
        panic!("first claim must acquire");
    };
    assert!(
        store.cache().is_empty(),
        "a claim alone must not reach the cache"
    );
    store
        .complete(&r.key, token, Some(b"ok"), r.retention)
        .await
        .unwrap();
    assert_eq!(store.cache().len(), 1);
    // A cache restarted empty: the durable store still answers, and the cache refills.
    store.cache().purge(&r.key.scope).await.unwrap();
    let again = store.claim(&r).await.unwrap();
    assert!(matches!(again, Claim::Done { .. }), "{again:?}");
    assert_eq!(store.cache().len(), 1);
}

/// A memory store that counts its calls, to see which calls the tiered store makes.
#[derive(Default)]
struct Counted {
    inner: MemoryStore,
    gets: AtomicUsize,
    batch_gets: AtomicUsize,
    claims: AtomicUsize,
    batch_claims: AtomicUsize,
    completes: AtomicUsize,
    batch_completes: AtomicUsize,
}

impl Counted {
    fn gets(&self) -> usize {
        self.gets.load(Ordering::SeqCst)
    }
    fn batch_gets(&self) -> usize {
        self.batch_gets.load(Ordering::SeqCst)
    }
    /// Calls of claim, claim_batch, complete and complete_batch, in that order.
    fn writes(&self) -> [usize; 4] {
        [
            &self.claims,
            &self.batch_claims,
            &self.completes,
            &self.batch_completes,
        ]
        .map(|n| n.load(Ordering::SeqCst))
    }
}

#[async_trait]
impl Store for Counted {
    async fn claim(&self, req: &ClaimRequest) -> Result<Claim, StoreError> {
        self.claims.fetch_add(1, Ordering::SeqCst);
        self.inner.claim(req).await
    }
    async fn claim_batch(&self, reqs: &[ClaimRequest]) -> Result<Vec<Claim>, StoreError> {
        self.batch_claims.fetch_add(1, Ordering::SeqCst);
        self.inner.claim_batch(reqs).await
    }
    async fn complete(
        &self,
        key: &RecordKey,
        token: FencingToken,
        result: Option<&[u8]>,
        retention: Duration,
    ) -> Result<(), StoreError> {
        self.completes.fetch_add(1, Ordering::SeqCst);
        self.inner.complete(key, token, result, retention).await
    }
    async fn complete_batch(
        &self,
        items: &[Completion<'_>],
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        self.batch_completes.fetch_add(1, Ordering::SeqCst);
        self.inner.complete_batch(items).await
    }
    async fn release(&self, key: &RecordKey, token: FencingToken) -> Result<(), StoreError> {
        self.inner.release(key, token).await
    }
    async fn extend(
        &self,
        key: &RecordKey,
        token: FencingToken,
        lease: Duration,
    ) -> Result<UnixMillis, StoreError> {
        self.inner.extend(key, token, lease).await
    }
    async fn get(&self, key: &RecordKey) -> Result<Option<Record>, StoreError> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        self.inner.get(key).await
    }
    async fn get_batch(&self, keys: &[RecordKey]) -> Result<Vec<Option<Record>>, StoreError> {
        self.batch_gets.fetch_add(1, Ordering::SeqCst);
        self.inner.get_batch(keys).await
    }
    async fn purge(&self, scope: &Scope) -> Result<u64, StoreError> {
        self.inner.purge(scope).await
    }
    async fn stats(&self, scope: &Scope) -> Result<ScopeStats, StoreError> {
        self.inner.stats(scope).await
    }
}

fn token(claim: Claim) -> FencingToken {
    match claim {
        Claim::Acquired { token, .. } => token,
        other => panic!("expected Acquired, got {other:?}"),
    }
}

#[tokio::test]
async fn completing_a_fresh_claim_does_not_read_the_durable_record_back() {
    let store = TieredStore::new(MemoryStore::new(), Counted::default());
    let r = req("fresh");
    let t = token(store.claim(&r).await.unwrap());
    store.complete(&r.key, t, None, r.retention).await.unwrap();
    assert_eq!(store.durable().gets(), 0);
    // The cache holds the claim's fingerprint: another payload is a conflict there.
    let cached = store.cache().get(&r.key).await.unwrap().unwrap();
    assert_eq!(cached.fingerprint, Some(Fingerprint::of(b"p")));
    let other = ClaimRequest {
        fingerprint: Some(Fingerprint::of(b"other")),
        ..r.clone()
    };
    assert_eq!(
        store.claim(&other).await.unwrap(),
        Claim::Conflict {
            existing: Fingerprint::of(b"p")
        }
    );
}

#[tokio::test]
async fn completing_a_retried_claim_copies_the_durable_fingerprint() {
    let store = TieredStore::new(MemoryStore::new(), Counted::default());
    let first = req("retried");
    let t = token(store.claim(&first).await.unwrap());
    store.release(&first.key, t).await.unwrap();
    // The retry carries no fingerprint; the record keeps the first one.
    let retry = ClaimRequest {
        fingerprint: None,
        ..first.clone()
    };
    let t = token(store.claim(&retry).await.unwrap());
    store
        .complete(&retry.key, t, None, retry.retention)
        .await
        .unwrap();
    assert_eq!(store.durable().gets(), 1);
    let cached = store.cache().get(&first.key).await.unwrap().unwrap();
    assert_eq!(cached.fingerprint, Some(Fingerprint::of(b"p")));
}

#[tokio::test]
async fn a_batch_claim_asks_the_cache_once() {
    let store = TieredStore::new(Counted::default(), MemoryStore::new());
    let reqs: Vec<ClaimRequest> = (0..5).map(|i| req(&format!("b{i}"))).collect();
    for r in &reqs[..3] {
        let t = token(store.claim(r).await.unwrap());
        store.complete(&r.key, t, None, r.retention).await.unwrap();
    }
    let (gets, batch_gets) = (store.cache().gets(), store.cache().batch_gets());
    let claims = store.claim_batch(&reqs).await.unwrap();
    assert_eq!(store.cache().batch_gets(), batch_gets + 1);
    assert_eq!(store.cache().gets(), gets);
    for c in &claims[..3] {
        assert_eq!(c, &Claim::Done { result: None });
    }
    for c in &claims[3..] {
        assert!(matches!(c, Claim::Acquired { attempt: 1, .. }), "{c:?}");
    }
}

fn done<'a>(r: &'a ClaimRequest, token: FencingToken, result: &'a [u8]) -> Completion<'a> {
    Completion {
        key: &r.key,
        token,
        result: Some(result),
        retention: r.retention,
    }
}

/// One `complete_batch` on the durable tier, then one `claim_batch` and one `complete_batch`
/// on the cache, which gets the fingerprint of each completed claim.
#[tokio::test]
async fn a_batch_completion_calls_each_tier_once_and_the_cache_learns_the_fingerprints() {
    let store = TieredStore::new(Counted::default(), Counted::default());
    let fresh = req("c-fresh");
    let tf = token(store.claim(&fresh).await.unwrap());
    // A retry carrying no fingerprint: only the durable record knows it.
    let retried = req("c-retried");
    let t = token(store.claim(&retried).await.unwrap());
    store.release(&retried.key, t).await.unwrap();
    let retry = ClaimRequest {
        fingerprint: None,
        ..retried.clone()
    };
    let tr = token(store.claim(&retry).await.unwrap());
    let (cache, durable) = (store.cache().writes(), store.durable().writes());
    let gets = (store.durable().gets(), store.durable().batch_gets());
    let out = store
        .complete_batch(&[
            done(&fresh, tf, b"a"),
            done(&retried, tr, b"b"),
            done(&retried, t, b"stale"),
        ])
        .await
        .unwrap();
    assert!(out[0].is_ok() && out[1].is_ok(), "{out:?}");
    assert!(
        matches!(out[2], Err(StoreError::LeaseLost { .. })),
        "{out:?}"
    );
    let plus = |before: [usize; 4], more: [usize; 4]| [0, 1, 2, 3].map(|i| before[i] + more[i]);
    assert_eq!(store.durable().writes(), plus(durable, [0, 0, 0, 1]));
    assert_eq!(store.cache().writes(), plus(cache, [0, 1, 0, 1]));
    // Only the retried claim's fingerprint is read back, in one batch.
    assert_eq!(
        (store.durable().gets(), store.durable().batch_gets()),
        (gets.0, gets.1 + 1)
    );
    for (r, result) in [(&fresh, b"a"), (&retried, b"b")] {
        let cached = store.cache().get(&r.key).await.unwrap().unwrap();
        assert_eq!(cached.state, State::Consumed);
        assert_eq!(cached.result.as_deref(), Some(&result[..]));
        assert_eq!(cached.fingerprint, Some(Fingerprint::of(b"p")), "{}", r.key);
    }
}
