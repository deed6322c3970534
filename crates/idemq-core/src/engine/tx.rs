//! The engine over a [`TransactionalStore`]: identify, run in the business transaction, and
//! answer as the engine does.

use std::sync::Arc;

use crate::adapter::HandlerFuture;
use crate::error::EngineError;
use crate::key::{FingerprintStrategy, KeyStrategy};
use crate::message::Message;
use crate::store::TransactionalStore;

use super::{Engine, EngineConfig, HandlerOutput, Outcome};

/// An [`Engine`] whose store is a [`TransactionalStore`], run with the record in the
/// handler's own transaction.
///
/// It is built from the store itself, so the store that claims a key is the store whose
/// transaction the handler writes through and commits: the claim, the business writes and
/// the `CONSUMED` mark commit together or not at all. Cheap to clone.
pub struct TxEngine<S, M> {
    store: Arc<S>,
    engine: Engine<M>,
}

impl<S, M> Clone for TxEngine<S, M> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            engine: self.engine.clone(),
        }
    }
}

impl<S: TransactionalStore, M: Message> TxEngine<S, M> {
    /// An engine over `store` for one consumer.
    pub fn new(store: Arc<S>, config: EngineConfig, keys: KeyStrategy<M>) -> Self {
        let engine = Engine::with_shared_store(store.clone(), config, keys);
        Self { store, engine }
    }

    /// The same engine with another fingerprint strategy.
    pub fn fingerprint(self, fingerprints: FingerprintStrategy<M>) -> Self {
        Self {
            store: self.store,
            engine: self.engine.fingerprint(fingerprints),
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<S> {
        &self.store
    }

    /// The engine over the same store, for keying and for handlers that do not write in the
    /// business transaction.
    pub fn engine(&self) -> &Engine<M> {
        &self.engine
    }

    /// Keys `msg`, then claims the key, runs `handler` on the open transaction and records the
    /// result in one commit ([`TransactionalStore::run_in_tx`]). A message that cannot be keyed
    /// answers [`EngineError::Key`] and nothing runs.
    pub async fn run<F, T, E>(&self, msg: &M, handler: F) -> Result<Outcome<E>, EngineError>
    where
        F: for<'t> FnOnce(&'t mut S::Conn) -> HandlerFuture<'t, T, E> + Send,
        T: HandlerOutput + Send,
        E: Send,
    {
        let (key, fingerprint) = self.engine.identify(msg)?;
        self.store
            .run_in_tx(self.engine.config(), key.key, fingerprint, handler)
            .await
    }
}
