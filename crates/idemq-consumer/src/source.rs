//! What a broker adapter supplies: how to open a session, and a session's deliveries.

use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;
use idemq_core::adapter::Delivery;

/// A broker as the runtime sees it: something that opens sessions (a connection, a
/// channel, a consumer registration) on which deliveries arrive.
pub trait Source: Send + Sync + 'static {
    /// The broker's delivery, settled through the adapter contract.
    type Delivery: Delivery + 'static;
    /// The broker's error.
    type Error: std::error::Error + Send + Sync + 'static;
    /// One session.
    type Session: Session<Delivery = Self::Delivery, Error = Self::Error>;

    /// Connects and starts consuming. The runtime calls it again, with backoff, after a
    /// session dies.
    fn open(&self) -> impl Future<Output = Result<Self::Session, Self::Error>> + Send;
}

/// One session's stream of deliveries.
pub trait Session: Send + 'static {
    /// The broker's delivery.
    type Delivery: Delivery + 'static;
    /// The broker's error.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Waits for the next deliveries: one, or several that arrived together (a poll batch,
    /// a listener call). `Ok(None)` means the source has nothing more to deliver, ever (the
    /// consumer then drains and stops); an error means the session died (the consumer
    /// drains, closes it and opens another).
    fn recv(
        &mut self,
    ) -> impl Future<Output = Result<Option<Vec<Self::Delivery>>, Self::Error>> + Send;

    /// Stops the broker from sending more (a consumer cancel), before a shutdown drain.
    /// What was received but not handed to a handler is never acknowledged, so the broker
    /// gives it back.
    fn cancel(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// Closes the session's connection from outside the loop. The runtime uses it after the
    /// drain, and for [`ConsumerHandle::disconnect`](crate::ConsumerHandle::disconnect) and
    /// [`ConsumerHandle::kill`](crate::ConsumerHandle::kill).
    fn closer(&self) -> Closer;
}

/// Closes a session's connection, as a network fault would. Cheap to clone.
#[derive(Clone)]
pub struct Closer(Arc<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>);

impl Closer {
    /// A closer running `f`.
    pub fn new<F, Fut>(f: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Self(Arc::new(move || Box::pin(f())))
    }

    /// A closer that does nothing, for sessions with no connection of their own.
    pub fn none() -> Self {
        Self::new(|| async {})
    }

    /// Closes the connection.
    pub async fn close(&self) {
        (self.0)().await
    }
}

impl std::fmt::Debug for Closer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Closer(..)")
    }
}
