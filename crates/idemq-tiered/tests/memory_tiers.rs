//! The tiering rules over two in-memory stores.

use std::time::Duration;

use idemq_conformance::Unreachable;
use idemq_core::store::MemoryStore;
use idemq_core::{Claim, ClaimRequest, Fingerprint, IdempotencyKey, RecordKey, Scope, Store};
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
