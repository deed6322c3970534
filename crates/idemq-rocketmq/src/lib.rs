//! RocketMQ adapter for idemq: a dedup push consumer on the idemq runtime and a keyed
//! producer, over `rocketmq-client-rust`.
//!
//! - [`Client`] is one client runtime (the name server, the threads listeners run on),
//!   shared by the sources and producers built from it.
//! - [`RmqSource`] is a topic consumed by a group, as a source of the consumer runtime
//!   ([`idemq_consumer::Consumer`]): each listener call is one batch, claimed with one
//!   `claim_batch`; a consumed duplicate is success, an in-flight duplicate comes back later
//!   (orderly: the queue is suspended), a failure goes to the broker's retry ladder and,
//!   after the last attempt, to the group's dead-letter topic with its reason.
//! - [`Producer`] stamps the business key as the message key and keeps the producer's
//!   unique id (`UNIQ_KEY`), so keying works on either.
//! - [`transaction`] has the transactional producer: half messages, the local transaction
//!   in SQL with its log row, check-backs answered from the log.
//! - [`keys`] has the two key strategies: business key, unique id.
//!
//! This crate holds only what speaks RocketMQ; the loop, the handler kinds and the
//! in-transaction path are the runtime's.
#![warn(missing_docs)]

mod client;
pub mod delay;
mod delivery;
mod error;
pub mod keys;
mod latch;
mod listener;
pub mod names;
mod producer;
mod source;
pub mod transaction;

pub use client::Client;
pub use delivery::RmqDelivery;
pub use error::RmqError;
pub use producer::{Outgoing, Producer};
pub use source::{Listener, RmqSession, RmqSource};

pub use rocketmq_client_rust;
pub use rocketmq_model;
