//! The shape of `run_in_tx` every SQL store shares: claim in a transaction, run the handler
//! on it, mark the key consumed, commit. The stores supply the claim and the mark.

use std::future::Future;

use idemq_core::adapter::HandlerFuture;
use idemq_core::record::{Claim, ClaimRequest, FencingToken};
use idemq_core::{
    EngineConfig, EngineError, Fingerprint, HandlerOutput, IdempotencyKey, Outcome, RecordKey,
};
use sqlx::{Database, Transaction};

use crate::{check_result_size, retrying, store_error, TxError};

/// A key claimed in an open transaction.
#[derive(Debug)]
pub struct ClaimedTx<DB: Database, H> {
    /// The transaction holding the claimed row.
    pub tx: Transaction<'static, DB>,
    /// The claim's fencing token.
    pub token: FencingToken,
    /// The claim's attempt number.
    pub attempt: u32,
    /// What the store keeps until the commit (SQLite: its writer turn and the claimed row).
    pub held: H,
}

impl<DB: Database> ClaimedTx<DB, ()> {
    /// A claim that holds nothing besides its transaction.
    pub fn new(tx: Transaction<'static, DB>, token: FencingToken, attempt: u32) -> Self {
        Self {
            tx,
            token,
            attempt,
            held: (),
        }
    }
}

/// A claim made in a transaction: acquired with the open transaction, or the answer of a
/// key that was not acquired.
pub type TxClaim<DB, H> = Result<ClaimedTx<DB, H>, Claim>;

/// What a store supplies to [`run_in_tx`].
pub trait InTx: Sync {
    /// The driver.
    type Db: Database;
    /// What the store keeps from the claim to the commit.
    type Held: Send + Sync;

    /// The largest result the store accepts.
    fn max_result_bytes(&self) -> usize;

    /// Begins a transaction and claims `req` in it: the open transaction, or the claim that
    /// was not acquired (the transaction then rolled back). A deadlock is retried.
    fn claim_in_tx(
        &self,
        req: &ClaimRequest,
    ) -> impl Future<Output = Result<TxClaim<Self::Db, Self::Held>, TxError>> + Send;

    /// Marks the key claimed with `token` consumed with `result`, kept for the config's
    /// retention, in the claim's transaction.
    fn mark_consumed(
        &self,
        conn: &mut <Self::Db as Database>::Connection,
        req: &ClaimRequest,
        token: FencingToken,
        held: &Self::Held,
        result: Option<&[u8]>,
    ) -> impl Future<Output = Result<(), TxError>> + Send;
}

/// Claims `key` in `config`'s scope, runs `handler` on the same transaction and marks the
/// key consumed, all in one transaction; a handler error rolls everything back. See the
/// stores' `run_in_tx` for the outcomes.
pub async fn run_in_tx<S, F, T, E>(
    store: &S,
    config: &EngineConfig,
    key: IdempotencyKey,
    fingerprint: Option<Fingerprint>,
    handler: F,
) -> Result<Outcome<E>, EngineError>
where
    S: InTx,
    F: for<'t> FnOnce(&'t mut <S::Db as Database>::Connection) -> HandlerFuture<'t, T, E>,
    T: HandlerOutput,
{
    let req = ClaimRequest {
        key: RecordKey::new(config.scope.clone(), key),
        fingerprint,
        lease: config.lease,
        retention: config.retention,
    };
    let ClaimedTx {
        mut tx,
        token,
        attempt,
        held,
    } = match retrying(|| store.claim_in_tx(&req)).await? {
        Ok(claimed) => claimed,
        Err(claim) => {
            return Ok(Outcome::settled(claim, req.fingerprint).expect("only Acquired is unsettled"))
        }
    };

    let value = match handler(&mut tx).await {
        Ok(value) => value,
        Err(error) => {
            tx.rollback().await.map_err(store_error)?;
            return Ok(Outcome::Failed { error, attempt });
        }
    };
    let result = value.into_stored();
    // Dropping `tx` on these early returns rolls the transaction back.
    check_result_size(
        result.as_deref(),
        config.max_result_bytes.min(store.max_result_bytes()),
    )?;
    store
        .mark_consumed(&mut tx, &req, token, &held, result.as_deref())
        .await
        .map_err(idemq_core::StoreError::from)?;
    tx.commit().await.map_err(store_error)?;
    // `held` (SQLite's writer turn) is let go only now, after the commit.
    drop(held);
    Ok(Outcome::Processed {
        result,
        attempt,
        protected: true,
    })
}
