//! What the consumer runs for each delivery: the handler kinds.
//!
//! Each kind holds the engine it runs under, so a handler that writes in the business
//! transaction can only be built from the store that claims its keys ([`TxEngine`]).

use std::fmt;
use std::future::Future;

use futures::future::join_all;
use idemq_core::adapter::{
    process, settle, DeadLetterReason, Delivery, Disposition, HandlerFuture, RetryPolicy,
};
use idemq_core::store::TransactionalStore;
use idemq_core::{Engine, HandlerOutput, TxEngine};

/// The work done for each delivery, run through the engine and settled as the adapter
/// contract says ([`idemq_core::adapter::settle`]).
///
/// Three kinds are provided: [`run`] (a closure under the engine's claim), [`decoded`] (a
/// decoding step first, whose failure dead-letters the message as `undecodable`) and
/// [`in_tx`] (the handler writes through the store's transaction, which also claims and
/// completes the key).
pub trait Handler<D: Delivery>: Send + Sync + 'static {
    /// Runs one delivery and settles it; answers what was done with it.
    fn handle(
        &self,
        delivery: D,
        policy: &RetryPolicy,
    ) -> impl Future<Output = Result<Disposition, D::Error>> + Send;

    /// Whether [`handle_batch`](Handler::handle_batch) claims a batch together. When it does
    /// not (the default), the consumer gives each delivery a task of its own.
    fn claims_in_batches(&self) -> bool {
        false
    }

    /// Runs deliveries received together and settles each; one answer per delivery. The
    /// default handles them side by side, one [`handle`](Handler::handle) each.
    fn handle_batch(
        &self,
        deliveries: Vec<D>,
        policy: &RetryPolicy,
    ) -> impl Future<Output = Vec<Result<Disposition, D::Error>>> + Send {
        join_all(deliveries.into_iter().map(move |d| self.handle(d, policy)))
    }
}

/// Pins a closure to the higher-ranked signature `process` wants.
fn borrowing<D, F, T, E>(f: F) -> F
where
    F: for<'a> FnOnce(&'a D) -> HandlerFuture<'a, T, E>,
{
    f
}

/// Dead-letters a delivery that did not decode.
async fn poison<D: Delivery>(delivery: D, why: String) -> Result<Disposition, D::Error> {
    tracing::warn!(error = %why, "undecodable message dead-lettered");
    let reason = DeadLetterReason::Undecodable(why);
    delivery.dead_letter(&reason).await?;
    Ok(Disposition::DeadLetter(reason))
}

/// Settles each delivery of a batch with its engine answer, side by side.
async fn settle_all<D, E>(
    deliveries: Vec<D>,
    results: Vec<Result<idemq_core::Outcome<E>, idemq_core::EngineError>>,
    policy: &RetryPolicy,
) -> Vec<Result<Disposition, D::Error>>
where
    D: Delivery,
    E: fmt::Display,
{
    let settles = deliveries
        .into_iter()
        .zip(results)
        .map(|(d, r)| async move { settle(d, &r, policy).await });
    join_all(settles).await
}

/// A closure run under the engine's claim: see [`run`].
pub struct Run<D, F> {
    engine: Engine<D>,
    f: F,
}

/// A handler that runs `f` under `engine`'s claim. `f` reads what it needs from the delivery
/// and returns a `'static` future; its `Ok` value is stored with the record.
///
/// Deliveries received together are claimed in one `claim_batch` and completed in one
/// `complete_batch` ([`Engine::run_batch`]).
pub fn run<D, F>(engine: Engine<D>, f: F) -> Run<D, F> {
    Run { engine, f }
}

impl<D, F, Fut, T, E> Handler<D> for Run<D, F>
where
    D: Delivery + 'static,
    F: Fn(&D) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
    T: HandlerOutput + Send + 'static,
    E: fmt::Display + Send + Sync + 'static,
{
    fn handle(
        &self,
        delivery: D,
        policy: &RetryPolicy,
    ) -> impl Future<Output = Result<Disposition, D::Error>> + Send {
        let f = &self.f;
        process(
            &self.engine,
            delivery,
            policy,
            borrowing(move |d| Box::pin(f(d))),
        )
    }

    fn claims_in_batches(&self) -> bool {
        true
    }

    async fn handle_batch(
        &self,
        deliveries: Vec<D>,
        policy: &RetryPolicy,
    ) -> Vec<Result<Disposition, D::Error>> {
        let results = self
            .engine
            .run_batch(&deliveries, |i| (self.f)(&deliveries[i]))
            .await;
        settle_all(deliveries, results, policy).await
    }
}

/// A handler with a decoding step: see [`decoded`].
pub struct Decoded<D, Dec, F> {
    engine: Engine<D>,
    decode: Dec,
    f: F,
}

/// A handler that first decodes each delivery with `decode` (a message that does not
/// decode goes to the dead-letter path at once, reason `undecodable`, and is never retried),
/// then runs `f` with the decoded value under `engine`'s claim.
pub fn decoded<D, Dec, F>(engine: Engine<D>, decode: Dec, f: F) -> Decoded<D, Dec, F> {
    Decoded { engine, decode, f }
}

impl<D, Dec, F, I, Fut, T, E> Handler<D> for Decoded<D, Dec, F>
where
    D: Delivery + 'static,
    Dec: Fn(&D) -> Result<I, String> + Send + Sync + 'static,
    F: Fn(I, &D) -> Fut + Send + Sync + 'static,
    I: Send + 'static,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
    T: HandlerOutput + Send + 'static,
    E: fmt::Display + Send + Sync + 'static,
{
    async fn handle(&self, delivery: D, policy: &RetryPolicy) -> Result<Disposition, D::Error> {
        match (self.decode)(&delivery) {
            Err(why) => poison(delivery, why).await,
            Ok(input) => {
                let f = &self.f;
                let work = borrowing(move |d| Box::pin(f(input, d)));
                process(&self.engine, delivery, policy, work).await
            }
        }
    }

    fn claims_in_batches(&self) -> bool {
        true
    }

    async fn handle_batch(
        &self,
        deliveries: Vec<D>,
        policy: &RetryPolicy,
    ) -> Vec<Result<Disposition, D::Error>> {
        let mut good = Vec::with_capacity(deliveries.len());
        let mut inputs = Vec::with_capacity(deliveries.len());
        let mut bad = Vec::new();
        for d in deliveries {
            match (self.decode)(&d) {
                Ok(input) => {
                    good.push(d);
                    inputs.push(Some(input));
                }
                Err(why) => bad.push(poison(d, why)),
            }
        }
        let poisoned = join_all(bad).await;
        let results = self
            .engine
            .run_batch(&good, |i| {
                let input = inputs[i].take().expect("run_batch runs each message once");
                (self.f)(input, &good[i])
            })
            .await;
        let mut out = settle_all(good, results, policy).await;
        out.extend(poisoned);
        out
    }
}

/// A handler writing through the store's transaction: see [`in_tx`].
pub struct InTx<S, D, Dec, F> {
    engine: TxEngine<S, D>,
    decode: Dec,
    f: F,
}

/// A handler whose writes share one transaction with the idempotency record.
///
/// Each delivery is decoded with `decode` (failures are dead-lettered as `undecodable`),
/// keyed by the engine (failures are dead-lettered as `unkeyable`), then the store claims
/// the key, runs `f` on the open transaction and marks the key consumed in the same commit
/// ([`TxEngine::run`]): the effect and the record are applied together or not at all, even
/// if the process dies mid-handler. Each delivery gets its own transaction and its own task.
pub fn in_tx<S, D, Dec, F>(engine: TxEngine<S, D>, decode: Dec, f: F) -> InTx<S, D, Dec, F> {
    InTx { engine, decode, f }
}

impl<S, D, Dec, F, I, T, E> Handler<D> for InTx<S, D, Dec, F>
where
    S: TransactionalStore + Sync,
    D: Delivery + 'static,
    Dec: Fn(&D) -> Result<I, String> + Send + Sync + 'static,
    F: for<'t> Fn(I, &'t mut S::Conn) -> HandlerFuture<'t, T, E> + Send + Sync + 'static,
    I: Send + 'static,
    T: HandlerOutput + Send + 'static,
    E: fmt::Display + Send + Sync + 'static,
{
    async fn handle(&self, delivery: D, policy: &RetryPolicy) -> Result<Disposition, D::Error> {
        match (self.decode)(&delivery) {
            Err(why) => poison(delivery, why).await,
            Ok(input) => {
                let f = &self.f;
                let result = self.engine.run(&delivery, move |conn| f(input, conn)).await;
                settle(delivery, &result, policy).await
            }
        }
    }
}
