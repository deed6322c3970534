//! RabbitMQ adapter for idemq: effectively-once consumers over `lapin`.
//!
//! - [`Topology`] declares the exchange, the work queue, one retry queue per delay of the
//!   [`RetryPolicy`](idemq_core::adapter::RetryPolicy), a delay queue for messages in
//!   progress elsewhere, and the dead-letter queue.
//! - [`Publisher`] stamps each message with its key (`message_id`), makes it persistent and
//!   waits for the broker's confirm.
//! - [`AmqpSource`] is the work queue as a source of the consumer runtime
//!   ([`idemq_consumer::Consumer`]), which runs each delivery through the engine, settles it
//!   as the adapter contract says and reconnects with backoff when the connection drops.
//!   This crate holds only what speaks AMQP: the source, the delivery and its settling, the
//!   topology and the publisher.
//!
//! RabbitMQ has no delayed delivery without a plugin, so delays are queues with a fixed
//! `x-message-ttl` that dead-letter back into the work queue.
#![warn(missing_docs)]

mod connect;
mod delivery;
mod error;
pub mod headers;
mod publish;
mod publisher;
mod source;
mod topology;

pub use connect::{connect, redact};
pub use delivery::AmqpDelivery;
pub use error::AmqpError;
pub use publisher::{Outgoing, Publisher};
pub use source::{AmqpSession, AmqpSource};
pub use topology::{Tier, Topology, MAX_NAME_BYTES};

pub use lapin;
