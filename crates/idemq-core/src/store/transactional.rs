use std::future::Future;

use crate::adapter::HandlerFuture;
use crate::engine::{EngineConfig, HandlerOutput, Outcome};
use crate::error::EngineError;
use crate::key::{Fingerprint, IdempotencyKey};

/// A store that can put the dedup record in the handler's own transaction (the SQL stores),
/// so the claim, the business writes and the `CONSUMED` mark commit or roll back together.
///
/// A crash anywhere before the commit leaves nothing behind, and the redelivery runs the
/// handler again; after the commit a duplicate is skipped. This closes the one window a
/// separate store cannot: a crash after the business commit but before `complete`.
pub trait TransactionalStore: super::Store {
    /// What the handler writes through, inside the transaction.
    type Conn: Send;

    /// Claims `key`, runs `handler` on the open transaction and records the result, all in
    /// one transaction. A handler error rolls everything back and is returned as
    /// [`Outcome::Failed`].
    fn run_in_tx<'a, F, T, E>(
        &'a self,
        config: &'a EngineConfig,
        key: IdempotencyKey,
        fingerprint: Option<Fingerprint>,
        handler: F,
    ) -> impl Future<Output = Result<Outcome<E>, EngineError>> + Send + 'a
    where
        F: for<'t> FnOnce(&'t mut Self::Conn) -> HandlerFuture<'t, T, E> + Send + 'a,
        T: HandlerOutput + Send + 'a,
        E: Send + 'a;
}
