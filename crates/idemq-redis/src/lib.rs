//! A Redis store for idemq, on a single node or a Redis Cluster.
//!
//! [`RedisStore`] keeps each record as one packed Redis string that expires (`PEXPIREAT`)
//! when the record does. Every transition — claim, complete, release, extend — is one Lua
//! script, so it is atomic in Redis and decided by the server's clock; a claim of a new key is
//! a single `SET NX` inside it, and a claim of an existing one answers the record's state in
//! the same round trip. The scripts follow the rules of
//! [`idemq_core::store::transition`] and pass the shared conformance suite on one node and on
//! a cluster.
//!
//! Keys look like `idemq:{scope}:key`: the scope is the cluster hash tag, so a scope lives on
//! one slot and a batch claim is one script call. [`HashTag::Key`] tags each key instead, to
//! spread a busy scope over the cluster; batches are then split by slot and sent at once.
//!
//! ```no_run
//! use idemq_core::{Engine, EngineConfig, Envelope, KeyStrategy, Outcome, Scope};
//! use idemq_redis::RedisStore;
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = RedisStore::connect("redis://127.0.0.1:6379").await?;
//! // or: RedisStore::connect_cluster(&["redis://127.0.0.1:17000"]).await?
//! let engine = Engine::new(
//!     store,
//!     EngineConfig::new(Scope::new("stock-service/orders")?),
//!     KeyStrategy::MessageId,
//! );
//! let msg = Envelope::new(&b"reduce 1"[..]).with_message_id("order-42");
//! let out = engine.run(&msg, || async { Ok::<_, std::io::Error>("done") }).await?;
//! assert!(matches!(out, Outcome::Processed { .. } | Outcome::Duplicate { .. }));
//! # Ok(()) }
//! ```
//!
//! [`Store::complete_batch`](idemq_core::Store::complete_batch) completes many claims in one
//! round trip (one pipeline per node on a cluster). Beyond the trait,
//! [`RedisStore::complete_and_claim`] pipelines the completion of one message with the claim
//! of the next.
#![warn(missing_docs)]

mod config;
mod conn;
mod keys;
mod reply;
mod scripts;
mod store;

pub use config::{RedisStoreBuilder, DEFAULT_MAX_RESULT_BYTES, DEFAULT_PREFIX};
/// The argument of [`Store::complete_batch`](idemq_core::Store::complete_batch) and
/// [`RedisStore::complete_and_claim`], re-exported from `idemq-core`.
pub use idemq_core::Completion;
pub use keys::HashTag;
pub use store::RedisStore;
