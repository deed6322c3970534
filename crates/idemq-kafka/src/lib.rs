//! Kafka adapter for idemq: a consumer-group consumer on the idemq runtime that commits a
//! partition's offset only past settled records, and a keyed idempotent producer, over
//! `rdkafka`.
//!
//! - [`KafkaSource`] is a topic consumed by a group, as a source of the consumer runtime
//!   ([`idemq_consumer::Consumer`]): each poll batch is claimed with one `claim_batch`; a
//!   consumed duplicate is acked, an in-flight duplicate and a failure go to the retry
//!   topic (held back until due), the last failure and poison to the dead-letter topic with
//!   their reason. Offsets are committed only past settled records; a revoked partition
//!   commits what is settled and leaves the rest to its next owner. A partition runs one
//!   record at a time in offset order, or one per ordering key, or unordered
//!   ([`Ordering`]); retries go through a retry topic or wait in place ([`Retries`]).
//! - [`Producer`] is idempotent (`enable.idempotence`), puts the business key in the record
//!   key and stamps a message id header ([`MESSAGE_ID`]) on every record.
//! - [`keys`] has the key strategies: record key, message id.
//! - [`admin::create_topics`] creates topics (tansu and many clusters do not on first use).
#![warn(missing_docs)]

pub mod admin;
mod context;
mod delivery;
mod error;
pub mod keys;
pub mod names;
mod ordering;
mod producer;
mod source;

pub use delivery::{KafkaDelivery, DUE};
pub use error::KafkaError;
pub use ordering::{Ordering, OrderingKey, Retries};
pub use producer::{Outgoing, Producer, MESSAGE_ID};
pub use source::{KafkaSession, KafkaSource};

pub use rdkafka;
