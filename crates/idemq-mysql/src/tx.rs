//! Dedup in the same transaction as the business writes.

use std::future::Future;

use futures::future::BoxFuture;
use idemq_core::adapter::HandlerFuture;
use idemq_core::record::{Claim, ClaimRequest, FencingToken};
use idemq_core::store::TransactionalStore;
use idemq_core::time::duration_ms;
use idemq_core::{EngineConfig, EngineError, Fingerprint, HandlerOutput, IdempotencyKey, Outcome};
use idemq_sql::{decide_claims, ClaimedTx, InTx, TxClaim, TxError};
use sqlx::mysql::MySqlConnection;
use sqlx::MySql;

use crate::MySqlStore;

impl MySqlStore {
    /// Claims `key` in `config`'s scope, runs `handler` on the same transaction and marks the
    /// key consumed, all in one transaction: the handler's writes and the idempotency record
    /// commit together or not at all.
    ///
    /// - A new key (or a released or expired claim) runs the handler; `Ok` commits the
    ///   handler's writes with the `CONSUMED` record and its result ([`Outcome::Processed`]).
    /// - A concurrent duplicate waits on the primary key (the row is inserted, uncommitted,
    ///   by the first); it becomes a duplicate once the first commits, or runs if the first
    ///   rolls back. The handler never runs twice for one key.
    /// - A handler error rolls everything back, the claim included ([`Outcome::Failed`]):
    ///   a redelivery runs it again. So does a crash or a dropped future at any point before
    ///   the commit.
    /// - A consumed key answers [`Outcome::Duplicate`] with the stored result, a key claimed
    ///   through [`Store::claim`](idemq_core::Store::claim) and still leased
    ///   [`Outcome::InProgress`], another payload [`Outcome::Conflict`].
    /// - A result over `config.max_result_bytes` or the store's limit rolls back and answers
    ///   [`StoreError::ResultTooLarge`](idemq_core::StoreError::ResultTooLarge).
    /// - A failed `COMMIT` answers
    ///   [`StoreError::Unavailable`](idemq_core::StoreError::Unavailable); whether it
    ///   committed is then unknown, and the redelivery finds out (a duplicate, or a first
    ///   run).
    ///
    /// ```no_run
    /// # use idemq_core::{EngineConfig, IdempotencyKey, Scope};
    /// # async fn demo(store: idemq_mysql::MySqlStore) -> Result<(), Box<dyn std::error::Error>> {
    /// let config = EngineConfig::new(Scope::new("payments")?);
    /// let outcome = store
    ///     .run_in_tx(&config, IdempotencyKey::new("pay-1001")?, None, |tx| {
    ///         Box::pin(async move {
    ///             sqlx::query("INSERT INTO payments (serial, cents) VALUES (?, ?)")
    ///                 .bind("pay-1001")
    ///                 .bind(500_i64)
    ///                 .execute(&mut *tx)
    ///                 .await?;
    ///             Ok::<_, sqlx::Error>("paid")
    ///         })
    ///     })
    ///     .await?;
    /// assert!(outcome.is_ackable());
    /// # Ok(()) }
    /// ```
    pub async fn run_in_tx<F, T, E>(
        &self,
        config: &EngineConfig,
        key: IdempotencyKey,
        fingerprint: Option<Fingerprint>,
        handler: F,
    ) -> Result<Outcome<E>, EngineError>
    where
        F: for<'t> FnOnce(&'t mut MySqlConnection) -> BoxFuture<'t, Result<T, E>>,
        T: HandlerOutput,
    {
        idemq_sql::run_in_tx(self, config, key, fingerprint, handler).await
    }
}

impl InTx for MySqlStore {
    type Db = MySql;
    type Held = ();

    fn max_result_bytes(&self) -> usize {
        self.max_result_bytes
    }

    async fn claim_in_tx(&self, req: &ClaimRequest) -> Result<TxClaim<MySql, ()>, TxError> {
        let reqs = std::slice::from_ref(req);
        loop {
            let mut tx = self.pool.begin().await?;
            // Lock first, insert only when missing: duplicates then queue for the row's
            // exclusive lock, instead of all taking the shared lock `INSERT IGNORE` takes on
            // an existing key and deadlocking when they upgrade it.
            let (rows, now) = self
                .read_rows(&mut tx, std::iter::once(&req.key), true)
                .await?;
            let Some(now) = now else {
                if self.insert_new(&mut tx, reqs, &[0]).await?.0 == 1 {
                    return Ok(Ok(ClaimedTx::new(tx, FencingToken(1), 1)));
                }
                // Inserted by another transaction meanwhile: lock it on the next turn.
                tx.rollback().await?;
                continue;
            };
            let mut decided = decide_claims(reqs, &[0], rows, now);
            self.write_rows(&mut tx, std::mem::take(&mut decided.writes))
                .await?;
            return Ok(match decided.claims.pop() {
                Some((_, Claim::Acquired { token, attempt, .. })) => {
                    Ok(ClaimedTx::new(tx, token, attempt))
                }
                Some((_, claim)) => Err(claim),
                None => continue,
            });
        }
    }

    async fn mark_consumed(
        &self,
        conn: &mut MySqlConnection,
        req: &ClaimRequest,
        token: FencingToken,
        _: &(),
        result: Option<&[u8]>,
    ) -> Result<(), TxError> {
        sqlx::query(&self.sql.mark_consumed)
            .bind(result)
            .bind(duration_ms(req.retention))
            .bind(req.key.scope.as_str().as_bytes())
            .bind(req.key.key.as_str().as_bytes())
            .bind(token.0 as i64)
            .execute(conn)
            .await?;
        Ok(())
    }
}

impl TransactionalStore for MySqlStore {
    type Conn = MySqlConnection;

    fn run_in_tx<'a, F, T, E>(
        &'a self,
        config: &'a EngineConfig,
        key: IdempotencyKey,
        fingerprint: Option<Fingerprint>,
        handler: F,
    ) -> impl Future<Output = Result<Outcome<E>, EngineError>> + Send + 'a
    where
        F: for<'t> FnOnce(&'t mut MySqlConnection) -> HandlerFuture<'t, T, E> + Send + 'a,
        T: HandlerOutput + Send + 'a,
        E: Send + 'a,
    {
        MySqlStore::run_in_tx(self, config, key, fingerprint, handler)
    }
}
