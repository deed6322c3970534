//! The consumer runtime of idemq: the one loop every broker adapter runs on.
//!
//! A broker adapter supplies only a [`Source`] (how to open a session), its [`Session`] (a
//! stream of deliveries, one at a time or in batches) and its
//! [`Delivery`](idemq_core::adapter::Delivery) operations (ack, redeliver, dead-letter).
//! Everything else lives here, once:
//!
//! - [`Consumer`]: the concurrency limit, the waiting queue that keeps reading while every
//!   handler is busy, batches claimed together, the bounded drain on reconnect and shutdown,
//!   reconnect with backoff, panic containment, and the [`ConsumerHandle`] to stop it;
//! - [`handler`]: the handler kinds — a closure under the engine's claim ([`run`]), a decoded
//!   handler whose decode failure is poison ([`decoded`]), and a handler that writes in the
//!   business transaction ([`in_tx`]);
//! - [`Stats`]: what the consumer did;
//! - [`headers`]: the names every adapter writes on retried and dead-lettered messages;
//! - [`tracker`]: the ordered-commit tracker for partitioned logs (Kafka, RocketMQ).
#![warn(missing_docs)]

mod consumer;
mod drain;
pub mod handler;
pub mod headers;
mod source;
mod stats;
pub mod tracker;

pub use consumer::{Consumer, ConsumerHandle};
pub use handler::{decoded, in_tx, run, Decoded, Handler, InTx, Run};
pub use source::{Closer, Session, Source};
pub use stats::{Counter, Stats};
