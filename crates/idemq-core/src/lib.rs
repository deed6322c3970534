//! The idempotency engine of idemq.
//!
//! Brokers deliver at least once; this crate makes the *effect* of a message happen once.
//! Every message gets an [`IdempotencyKey`] inside a [`Scope`]; a [`Store`] records the key
//! as [`State::Consuming`] (a lease with a fencing token) and then [`State::Consumed`]
//! (with an optional stored result). The [`Engine`] drives those transitions around a
//! handler, and [`IdempotencyLayer`] does the same for a `tower` service.
//!
//! ```
//! use idemq_core::{Engine, EngineConfig, Envelope, KeyStrategy, Outcome, Scope};
//! use idemq_core::store::MemoryStore;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let engine = Engine::new(
//!     MemoryStore::new(),
//!     EngineConfig::new(Scope::new("stock-service/orders")?),
//!     KeyStrategy::MessageId,
//! );
//! let msg = Envelope::new(&b"reduce 1"[..]).with_message_id("order-42");
//! let first = engine.run(&msg, || async { Ok::<_, std::io::Error>("done") }).await?;
//! let again = engine.run(&msg, || async { Ok::<_, std::io::Error>("never runs") }).await?;
//! assert!(matches!(first, Outcome::Processed { .. }));
//! assert!(matches!(again, Outcome::Duplicate { .. }));
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub mod adapter;
pub mod engine;
mod error;
pub mod key;
pub mod layer;
pub mod message;
pub mod metrics;
pub mod record;
pub mod store;
pub mod time;

pub use engine::{Engine, EngineConfig, FailMode, HandlerOutput, Outcome, TxEngine};
pub use error::EngineError;
pub use key::{
    Fingerprint, FingerprintStrategy, IdempotencyKey, KeyError, KeyStrategy, RecordKey, Scope,
};
pub use layer::{IdempotencyLayer, IdempotencyService};
pub use message::{Envelope, Message};
pub use record::{Claim, ClaimRequest, Completion, FencingToken, Record, State};
pub use store::{Store, StoreError};
