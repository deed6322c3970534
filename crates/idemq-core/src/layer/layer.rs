use tower_layer::Layer;

use super::IdempotencyService;
use crate::engine::Engine;

/// Wraps a handler service so each message runs through an [`Engine`].
pub struct IdempotencyLayer<M> {
    engine: Engine<M>,
}

impl<M> IdempotencyLayer<M> {
    /// A layer that decides messages with `engine`.
    pub fn new(engine: Engine<M>) -> Self {
        Self { engine }
    }
}

impl<M> Clone for IdempotencyLayer<M> {
    fn clone(&self) -> Self {
        Self {
            engine: self.engine.clone(),
        }
    }
}

impl<S, M> Layer<S> for IdempotencyLayer<M> {
    type Service = IdempotencyService<S, M>;

    fn layer(&self, inner: S) -> Self::Service {
        IdempotencyService::new(inner, self.engine.clone())
    }
}
