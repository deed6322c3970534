//! RabbitMQ adapter for idemq: effectively-once consumers over `lapin`.
//!
//! - [`Topology`] declares the exchange, the work queue, one retry queue per delay of the
//!   [`RetryPolicy`](idemq_core::adapter::RetryPolicy), a delay queue for messages in
//!   progress elsewhere, and the dead-letter queue.
//! - [`Publisher`] stamps each message with its key (`message_id`), makes it persistent and
//!   waits for the broker's confirm.
//! - [`Consumer`] runs each delivery through the engine with
//!   [`process`](idemq_core::adapter::process) and settles it as the adapter contract says,
//!   reconnecting with backoff when the connection drops.
//!
//! RabbitMQ has no delayed delivery without a plugin, so delays are queues with a fixed
//! `x-message-ttl` that dead-letter back into the work queue.
#![warn(missing_docs)]

mod connect;
mod consumer;
mod delivery;
mod error;
mod handler;
pub mod headers;
mod publish;
mod publisher;
mod receiver;
mod stats;
mod topology;

pub use connect::{connect, redact};
pub use consumer::{Consumer, ConsumerHandle};
pub use delivery::AmqpDelivery;
pub use error::AmqpError;
pub use handler::{decoded, in_tx, transactional, Decoded, Handler, InTx, Keyed, Transactional};
pub use publisher::{Outgoing, Publisher};
pub use receiver::Receiver;
pub use stats::{Counter, Stats};
pub use topology::{Tier, Topology, MAX_NAME_BYTES};

pub use lapin;
