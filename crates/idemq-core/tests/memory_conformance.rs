//! The in-memory store against the shared conformance suite.

use idemq_core::store::{MemoryStore, StoreError};
use idemq_core::{Claim, ClaimRequest, FencingToken, Record, RecordKey, Scope, Store};

/// A store whose server cannot be reached: every call fails as a network error would.
struct Unreachable;

#[async_trait::async_trait]
impl Store for Unreachable {
    async fn claim(&self, _: &ClaimRequest) -> Result<Claim, StoreError> {
        Err(down())
    }
    async fn complete(
        &self,
        _: &RecordKey,
        _: FencingToken,
        _: Option<&[u8]>,
        _: std::time::Duration,
    ) -> Result<(), StoreError> {
        Err(down())
    }
    async fn release(&self, _: &RecordKey, _: FencingToken) -> Result<(), StoreError> {
        Err(down())
    }
    async fn extend(
        &self,
        _: &RecordKey,
        _: FencingToken,
        _: std::time::Duration,
    ) -> Result<i64, StoreError> {
        Err(down())
    }
    async fn get(&self, _: &RecordKey) -> Result<Option<Record>, StoreError> {
        Err(down())
    }
    async fn purge(&self, _: &Scope) -> Result<u64, StoreError> {
        Err(down())
    }
    async fn stats(&self, _: &Scope) -> Result<idemq_core::store::ScopeStats, StoreError> {
        Err(down())
    }
}

fn down() -> StoreError {
    StoreError::unavailable(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
}

idemq_conformance::store_conformance! {
    store: async { MemoryStore::new() },
    unreachable: async { Unreachable },
}
