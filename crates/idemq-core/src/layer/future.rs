use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::engine::Outcome;
use crate::error::EngineError;

type BoxedOutcome<E> = Pin<Box<dyn Future<Output = Result<Outcome<E>, EngineError>> + Send>>;

/// The response future of [`IdempotencyService`](super::IdempotencyService).
pub struct ResponseFuture<E> {
    inner: BoxedOutcome<E>,
}

impl<E> ResponseFuture<E> {
    pub(crate) fn new(
        fut: impl Future<Output = Result<Outcome<E>, EngineError>> + Send + 'static,
    ) -> Self {
        Self {
            inner: Box::pin(fut),
        }
    }
}

impl<E> Future for ResponseFuture<E> {
    type Output = Result<Outcome<E>, EngineError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl<E> std::fmt::Debug for ResponseFuture<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResponseFuture")
    }
}
