//! What a consumer runs for each message.

use std::fmt;
use std::future::Future;

use idemq_core::HandlerOutput;

use crate::delivery::AmqpDelivery;

/// The work done for one message, run by the engine at most once per key.
///
/// Closures `Fn(&AmqpDelivery) -> impl Future` are handlers: they read what they need from
/// the delivery, then return a `'static` future. [`decoded`] adds a decoding step whose
/// failure sends the message straight to the dead-letter queue.
pub trait Handler: Send + Sync + 'static {
    /// What [`Handler::decode`] makes of a delivery.
    type Input: Send + 'static;
    /// What the handler returns; stored with the record and given back to duplicates.
    type Output: HandlerOutput + Send + 'static;
    /// The handler's error: it is retried with backoff, then dead-lettered.
    type Error: fmt::Display + Send + 'static;

    /// Decodes a delivery; an error marks it as poison (dead-lettered at once, never
    /// retried).
    fn decode(&self, delivery: &AmqpDelivery) -> Result<Self::Input, String>;

    /// Does the work.
    fn call(
        &self,
        input: Self::Input,
        delivery: &AmqpDelivery,
    ) -> impl Future<Output = Result<Self::Output, Self::Error>> + Send + 'static;
}

impl<F, Fut, T, E> Handler for F
where
    F: Fn(&AmqpDelivery) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
    T: HandlerOutput + Send + 'static,
    E: fmt::Display + Send + 'static,
{
    type Input = ();
    type Output = T;
    type Error = E;

    fn decode(&self, _: &AmqpDelivery) -> Result<(), String> {
        Ok(())
    }

    fn call(
        &self,
        _: (),
        delivery: &AmqpDelivery,
    ) -> impl Future<Output = Result<T, E>> + Send + 'static {
        self(delivery)
    }
}

/// A handler with a decoding step: see [`decoded`].
#[derive(Debug, Clone)]
pub struct Decoded<D, F> {
    decode: D,
    handler: F,
}

/// A handler that first decodes each delivery with `decode` (a poison message, one that
/// does not decode, goes to the dead-letter queue at once with reason `undecodable`), then
/// runs `handler` with the decoded value.
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
    E: fmt::Display + Send + 'static,
{
    type Input = I;
    type Output = T;
    type Error = E;

    fn decode(&self, delivery: &AmqpDelivery) -> Result<I, String> {
        (self.decode)(delivery)
    }

    fn call(
        &self,
        input: I,
        delivery: &AmqpDelivery,
    ) -> impl Future<Output = Result<T, E>> + Send + 'static {
        (self.handler)(input, delivery)
    }
}
