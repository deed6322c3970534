use std::task::{Context, Poll};

use tower_service::Service;

use super::ResponseFuture;
use crate::engine::{Engine, HandlerOutput, Outcome};
use crate::error::EngineError;
use crate::message::Message;

/// A handler service behind the idempotency engine: its response is the [`Outcome`], and the
/// inner service is called only for a message whose key this consumer acquired.
pub struct IdempotencyService<S, M> {
    inner: S,
    engine: Engine<M>,
}

impl<S, M> IdempotencyService<S, M> {
    /// Wraps `inner` with `engine`.
    pub fn new(inner: S, engine: Engine<M>) -> Self {
        Self { inner, engine }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: Clone, M> Clone for IdempotencyService<S, M> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            engine: self.engine.clone(),
        }
    }
}

impl<S, M> Service<M> for IdempotencyService<S, M>
where
    M: Message + Send + 'static,
    S: Service<M> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: HandlerOutput + Send,
    S::Error: Send,
{
    type Response = Outcome<S::Error>;
    type Error = EngineError;
    type Future = ResponseFuture<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Readiness errors of the inner service surface on the call itself.
        match self.inner.poll_ready(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(_) => Poll::Ready(Ok(())),
        }
    }

    fn call(&mut self, msg: M) -> Self::Future {
        // The service that was polled ready is the one to call; keep a fresh clone for later.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let engine = self.engine.clone();
        ResponseFuture::new(async move {
            let (key, fingerprint) = engine.identify(&msg)?;
            engine
                .run_keyed(key, fingerprint, move || inner.call(msg))
                .await
        })
    }
}
