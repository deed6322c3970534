//! What a consumer runs for each message.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use idemq_core::adapter::{process, settle, Disposition, HandlerFuture, RetryPolicy};
use idemq_core::store::TransactionalStore;
use idemq_core::{
    Engine, EngineConfig, EngineError, Fingerprint, HandlerOutput, IdempotencyKey, Outcome,
};

use crate::delivery::AmqpDelivery;
use crate::error::AmqpError;

/// The work done for one message, and how it is run through the engine.
///
/// Four kinds are provided:
///
/// - closures `Fn(&AmqpDelivery) -> impl Future<Output = Result<T, E>>`: they read what
///   they need from the delivery and return a `'static` future, which
///   [`idemq_core::adapter::process`] runs under the engine's claim;
/// - [`decoded`]: the same with a decoding step whose failure sends the message straight to
///   the dead-letter queue (reason `undecodable`);
/// - [`in_tx`]: the handler writes through a
///   [`TransactionalStore`]'s transaction, which also claims and completes the key;
/// - [`transactional`]: the handler gets the key and computes the outcome itself, for stores
///   with their own transactional API.
pub trait Handler: Send + Sync + 'static {
    /// What [`Handler::decode`] makes of a delivery.
    type Input: Send + 'static;

    /// Decodes a delivery; an error marks it as poison: dead-lettered at once, never
    /// retried.
    fn decode(&self, delivery: &AmqpDelivery) -> Result<Self::Input, String>;

    /// Runs the delivery through the engine and settles it as the adapter contract says.
    fn process(
        &self,
        engine: &Engine<AmqpDelivery>,
        policy: &RetryPolicy,
        input: Self::Input,
        delivery: AmqpDelivery,
    ) -> impl Future<Output = Result<Disposition, AmqpError>> + Send;
}

/// Pins a closure to the higher-ranked signature `process` wants.
fn borrowing<F, T, E>(f: F) -> F
where
    F: for<'a> FnOnce(&'a AmqpDelivery) -> HandlerFuture<'a, T, E>,
{
    f
}

impl<F, Fut, T, E> Handler for F
where
    F: Fn(&AmqpDelivery) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
    T: HandlerOutput + Send + 'static,
    E: fmt::Display + Send + Sync + 'static,
{
    type Input = ();

    fn decode(&self, _: &AmqpDelivery) -> Result<(), String> {
        Ok(())
    }

    fn process(
        &self,
        engine: &Engine<AmqpDelivery>,
        policy: &RetryPolicy,
        _: (),
        delivery: AmqpDelivery,
    ) -> impl Future<Output = Result<Disposition, AmqpError>> + Send {
        process(
            engine,
            delivery,
            policy,
            borrowing(move |d| Box::pin(self(d))),
        )
    }
}

/// A handler with a decoding step: see [`decoded`].
#[derive(Debug, Clone)]
pub struct Decoded<D, F> {
    decode: D,
    handler: F,
}

/// A handler that first decodes each delivery with `decode` (a message that does not decode
/// goes to the dead-letter queue at once, reason `undecodable`), then runs `handler` with the
/// decoded value under the engine's claim.
pub fn decoded<D, F>(decode: D, handler: F) -> Decoded<D, F> {
    Decoded { decode, handler }
}

impl<D, F, I, Fut, T, E> Handler for Decoded<D, F>
where
    D: Fn(&AmqpDelivery) -> Result<I, String> + Send + Sync + 'static,
    F: Fn(I, &AmqpDelivery) -> Fut + Send + Sync + 'static,
    I: Send + 'static,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
    T: HandlerOutput + Send + 'static,
    E: fmt::Display + Send + Sync + 'static,
{
    type Input = I;

    fn decode(&self, delivery: &AmqpDelivery) -> Result<I, String> {
        (self.decode)(delivery)
    }

    fn process(
        &self,
        engine: &Engine<AmqpDelivery>,
        policy: &RetryPolicy,
        input: I,
        delivery: AmqpDelivery,
    ) -> impl Future<Output = Result<Disposition, AmqpError>> + Send {
        let run = borrowing(move |d| Box::pin((self.handler)(input, d)));
        process(engine, delivery, policy, run)
    }
}

/// What a [`transactional`] handler gets to claim its key in its own transaction.
#[derive(Debug, Clone)]
pub struct Keyed<I> {
    /// The decoded message.
    pub input: I,
    /// The idempotency key, taken by the engine's key strategy.
    pub key: IdempotencyKey,
    /// The payload fingerprint, when the engine keeps them.
    pub fingerprint: Option<Fingerprint>,
    /// The engine's configuration (scope, lease, retention).
    pub config: EngineConfig,
}

/// A handler that runs its own claim: see [`transactional`].
#[derive(Debug, Clone)]
pub struct Transactional<D, F> {
    decode: D,
    handler: F,
}

/// A handler that puts the idempotency record in the business transaction.
///
/// Each delivery is decoded with `decode` (failures are dead-lettered as `undecodable`) and
/// keyed with the engine's key strategy (failures are dead-lettered as `unkeyable`); then
/// `handler` gets a [`Keyed`] and returns the outcome, typically from a SQL store's
/// `run_in_tx(&keyed.config, keyed.key, keyed.fingerprint, |tx| ...)`, which claims the key,
/// runs the business writes and marks the key consumed in one commit. The outcome is then
/// settled exactly as [`idemq_core::adapter::process`] would.
pub fn transactional<D, F>(decode: D, handler: F) -> Transactional<D, F> {
    Transactional { decode, handler }
}

impl<D, F, I, Fut, E> Handler for Transactional<D, F>
where
    D: Fn(&AmqpDelivery) -> Result<I, String> + Send + Sync + 'static,
    F: Fn(Keyed<I>) -> Fut + Send + Sync + 'static,
    I: Send + 'static,
    Fut: Future<Output = Result<Outcome<E>, EngineError>> + Send + 'static,
    E: fmt::Display + Send + Sync + 'static,
{
    type Input = I;

    fn decode(&self, delivery: &AmqpDelivery) -> Result<I, String> {
        (self.decode)(delivery)
    }

    async fn process(
        &self,
        engine: &Engine<AmqpDelivery>,
        policy: &RetryPolicy,
        input: I,
        delivery: AmqpDelivery,
    ) -> Result<Disposition, AmqpError> {
        let result = match engine.identify(&delivery) {
            Ok((key, fingerprint)) => {
                let keyed = Keyed {
                    input,
                    key: key.key,
                    fingerprint,
                    config: engine.config().clone(),
                };
                (self.handler)(keyed).await
            }
            Err(e) => Err(e),
        };
        settle(delivery, &result, policy).await
    }
}

/// A handler that writes through a [`TransactionalStore`]'s transaction: see [`in_tx`].
pub struct InTx<S, D, F> {
    store: Arc<S>,
    decode: D,
    handler: F,
}

/// A handler whose writes share one transaction with the idempotency record.
///
/// Each delivery is decoded with `decode` (failures are dead-lettered as `undecodable`),
/// keyed with the engine's key strategy (failures are dead-lettered as `unkeyable`), then
/// `store.run_in_tx` claims the key, runs `handler` on the open transaction and marks the
/// key consumed in the same commit: the effect and the dedup row are applied together or
/// not at all, even if the process dies mid-handler. Build the engine over the same store.
pub fn in_tx<S, D, F, I, T, E>(store: Arc<S>, decode: D, handler: F) -> InTx<S, D, F>
where
    S: TransactionalStore,
    D: Fn(&AmqpDelivery) -> Result<I, String>,
    F: for<'t> Fn(I, &'t mut S::Conn) -> HandlerFuture<'t, T, E>,
{
    InTx {
        store,
        decode,
        handler,
    }
}

impl<S, D, F, I, T, E> Handler for InTx<S, D, F>
where
    S: TransactionalStore + Sync,
    D: Fn(&AmqpDelivery) -> Result<I, String> + Send + Sync + 'static,
    F: for<'t> Fn(I, &'t mut S::Conn) -> HandlerFuture<'t, T, E> + Send + Sync + 'static,
    I: Send + 'static,
    T: HandlerOutput + Send + 'static,
    E: fmt::Display + Send + Sync + 'static,
{
    type Input = I;

    fn decode(&self, delivery: &AmqpDelivery) -> Result<I, String> {
        (self.decode)(delivery)
    }

    async fn process(
        &self,
        engine: &Engine<AmqpDelivery>,
        policy: &RetryPolicy,
        input: I,
        delivery: AmqpDelivery,
    ) -> Result<Disposition, AmqpError> {
        let result = match engine.identify(&delivery) {
            Ok((key, fingerprint)) => {
                let handler = &self.handler;
                self.store
                    .run_in_tx(engine.config(), key.key, fingerprint, move |conn| {
                        handler(input, conn)
                    })
                    .await
            }
            Err(e) => Err(e),
        };
        settle(delivery, &result, policy).await
    }
}
