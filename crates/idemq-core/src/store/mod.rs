//! The [`Store`] trait every backend implements, and the in-memory store.

use std::time::Duration;

use async_trait::async_trait;

use crate::key::{RecordKey, Scope};
use crate::record::{Claim, ClaimRequest, Completion, FencingToken, Record};
use crate::time::UnixMillis;

mod memory;
mod transactional;
pub mod transition;

pub use memory::MemoryStore;
pub use transactional::TransactionalStore;

/// The error of a store operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The caller's fencing token no longer owns the record: its lease was taken over (or the
    /// record expired). Its write was refused.
    #[error("lease lost on {key}: the record is owned by another token")]
    LeaseLost {
        /// The record whose lease was lost.
        key: RecordKey,
    },
    /// A result larger than the store accepts; it is refused, never truncated.
    #[error("result of {size} bytes exceeds the limit of {max} bytes")]
    ResultTooLarge {
        /// The result's size.
        size: usize,
        /// The configured limit.
        max: usize,
    },
    /// The store cannot be reached or failed; nothing was decided.
    #[error("store unavailable: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The store holds data it cannot read back.
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// The store's configuration is invalid (a table name, a key prefix).
    #[error("invalid store configuration: {0}")]
    Config(String),
}

impl StoreError {
    /// Wraps any backend error as [`StoreError::Unavailable`].
    pub fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Unavailable(Box::new(e))
    }
}

/// Counts of records in one scope, for the CLI's `stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScopeStats {
    /// Records in [`State::Consuming`](crate::State::Consuming).
    pub consuming: u64,
    /// Records in [`State::Consumed`](crate::State::Consumed).
    pub consumed: u64,
}

/// A durable record of which keys were consumed, with atomic transitions.
///
/// Every transition is atomic in the backend: two consumers claiming one key at once get
/// exactly one [`Claim::Acquired`]. `complete`, `release` and `extend` succeed only for the
/// current token and answer [`StoreError::LeaseLost`] otherwise. The shared conformance suite
/// (`idemq-conformance`) states these rules as tests that every store runs.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Claims a key: a new key, a released claim or an expired lease is acquired with a new
    /// token; a live lease is in progress; a consumed key is done; a different fingerprint is
    /// a conflict.
    async fn claim(&self, req: &ClaimRequest) -> Result<Claim, StoreError>;

    /// Claims many keys in one round trip where the backend allows it. Answers in order.
    async fn claim_batch(&self, reqs: &[ClaimRequest]) -> Result<Vec<Claim>, StoreError> {
        let mut out = Vec::with_capacity(reqs.len());
        for r in reqs {
            out.push(self.claim(r).await?);
        }
        Ok(out)
    }

    /// Marks a claimed key consumed, storing `result`, and keeps it for `retention`.
    async fn complete(
        &self,
        key: &RecordKey,
        token: FencingToken,
        result: Option<&[u8]>,
        retention: Duration,
    ) -> Result<(), StoreError>;

    /// Completes many claims in one round trip where the backend allows it.
    ///
    /// The outer error means nothing is known of the batch (some may have completed); the
    /// inner ones are per completion, in order: [`StoreError::LeaseLost`] or
    /// [`StoreError::ResultTooLarge`], exactly as [`Store::complete`] would answer alone.
    async fn complete_batch(
        &self,
        items: &[Completion<'_>],
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        let mut out = Vec::with_capacity(items.len());
        for c in items {
            match self.complete(c.key, c.token, c.result, c.retention).await {
                Ok(()) => out.push(Ok(())),
                Err(e @ (StoreError::LeaseLost { .. } | StoreError::ResultTooLarge { .. })) => {
                    out.push(Err(e))
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Gives a claim up so the next delivery runs the handler again.
    async fn release(&self, key: &RecordKey, token: FencingToken) -> Result<(), StoreError>;

    /// Extends a lease (a heartbeat for long handlers); returns the new deadline.
    async fn extend(
        &self,
        key: &RecordKey,
        token: FencingToken,
        lease: Duration,
    ) -> Result<UnixMillis, StoreError>;

    /// Reads a record, for inspection and tests; expired records read as `None`.
    async fn get(&self, key: &RecordKey) -> Result<Option<Record>, StoreError>;

    /// Reads many records in one round trip where the backend allows it. Answers in order,
    /// as `get` would for each key.
    async fn get_batch(&self, keys: &[RecordKey]) -> Result<Vec<Option<Record>>, StoreError> {
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            out.push(self.get(k).await?);
        }
        Ok(out)
    }

    /// Deletes every record of a scope; returns how many were deleted.
    async fn purge(&self, scope: &Scope) -> Result<u64, StoreError>;

    /// Counts the live records of a scope.
    async fn stats(&self, scope: &Scope) -> Result<ScopeStats, StoreError>;
}

#[async_trait]
impl<S: Store + ?Sized> Store for std::sync::Arc<S> {
    async fn claim(&self, req: &ClaimRequest) -> Result<Claim, StoreError> {
        (**self).claim(req).await
    }
    async fn claim_batch(&self, reqs: &[ClaimRequest]) -> Result<Vec<Claim>, StoreError> {
        (**self).claim_batch(reqs).await
    }
    async fn complete(
        &self,
        key: &RecordKey,
        token: FencingToken,
        result: Option<&[u8]>,
        retention: Duration,
    ) -> Result<(), StoreError> {
        (**self).complete(key, token, result, retention).await
    }
    async fn complete_batch(
        &self,
        items: &[Completion<'_>],
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        (**self).complete_batch(items).await
    }
    async fn release(&self, key: &RecordKey, token: FencingToken) -> Result<(), StoreError> {
        (**self).release(key, token).await
    }
    async fn extend(
        &self,
        key: &RecordKey,
        token: FencingToken,
        lease: Duration,
    ) -> Result<UnixMillis, StoreError> {
        (**self).extend(key, token, lease).await
    }
    async fn get(&self, key: &RecordKey) -> Result<Option<Record>, StoreError> {
        (**self).get(key).await
    }
    async fn get_batch(&self, keys: &[RecordKey]) -> Result<Vec<Option<Record>>, StoreError> {
        (**self).get_batch(keys).await
    }
    async fn purge(&self, scope: &Scope) -> Result<u64, StoreError> {
        (**self).purge(scope).await
    }
    async fn stats(&self, scope: &Scope) -> Result<ScopeStats, StoreError> {
        (**self).stats(scope).await
    }
}
