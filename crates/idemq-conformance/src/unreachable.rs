use std::time::Duration;

use async_trait::async_trait;
use idemq_core::store::{ScopeStats, StoreError};
use idemq_core::{Claim, ClaimRequest, FencingToken, Record, RecordKey, Scope, Store};

/// A store whose server cannot be reached: every call fails as a refused connection would.
/// For testing stores that wrap other stores; a real store is tested pointed at a closed port.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unreachable;

fn down() -> StoreError {
    StoreError::unavailable(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
}

#[async_trait]
impl Store for Unreachable {
    async fn claim(&self, _: &ClaimRequest) -> Result<Claim, StoreError> {
        Err(down())
    }
    async fn complete(
        &self,
        _: &RecordKey,
        _: FencingToken,
        _: Option<&[u8]>,
        _: Duration,
    ) -> Result<(), StoreError> {
        Err(down())
    }
    async fn release(&self, _: &RecordKey, _: FencingToken) -> Result<(), StoreError> {
        Err(down())
    }
    async fn extend(&self, _: &RecordKey, _: FencingToken, _: Duration) -> Result<i64, StoreError> {
        Err(down())
    }
    async fn get(&self, _: &RecordKey) -> Result<Option<Record>, StoreError> {
        Err(down())
    }
    async fn purge(&self, _: &Scope) -> Result<u64, StoreError> {
        Err(down())
    }
    async fn stats(&self, _: &Scope) -> Result<ScopeStats, StoreError> {
        Err(down())
    }
}
