//! A `tower` middleware that runs a handler service effectively once per key.
//!
//! ```
//! use idemq_core::{Engine, EngineConfig, Envelope, IdempotencyLayer, KeyStrategy, Scope};
//! use idemq_core::store::MemoryStore;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let engine = Engine::new(
//!     MemoryStore::new(),
//!     EngineConfig::new(Scope::new("billing/payments")?),
//!     KeyStrategy::<Envelope>::MessageId,
//! );
//! let svc = ServiceBuilder::new()
//!     .layer(IdempotencyLayer::new(engine))
//!     .service(service_fn(|msg: Envelope| async move {
//!         Ok::<_, std::io::Error>(msg.payload.to_vec())
//!     }));
//! let outcome = svc.oneshot(Envelope::new("pay 10").with_message_id("p-1")).await?;
//! assert!(outcome.is_ackable());
//! # Ok(()) }
//! ```

mod future;
#[allow(clippy::module_inception)]
mod layer;
mod service;

pub use future::ResponseFuture;
pub use layer::IdempotencyLayer;
pub use service::IdempotencyService;
