//! The broker seen by the demo: publish messages, and a [`Source`] of the consumer runtime
//! to consume them.
//!
//! A broker adapter plugs in by implementing [`Broker`] with its adapter's source; the
//! consumer is the runtime's ([`idemq_consumer::Consumer`]), as in a user's service.

pub mod amqp;
pub mod kafka;
pub mod memory;
pub mod rocketmq;

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use idemq_consumer::Source;

pub use memory::{MemoryBroker, MemoryDelivery};

use super::DemoError;
use crate::url::{BrokerUrl, UrlError};

/// A broker failure.
#[derive(Debug, thiserror::Error)]
#[error("broker: {0}")]
pub struct BrokerError(#[source] pub Box<dyn std::error::Error + Send + Sync>);

/// A message to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The producer's message id; a retried send gets a new one, as producers do.
    pub message_id: String,
    /// The body.
    pub payload: Bytes,
    /// Hold the message back this long before the first delivery (brokers without delayed
    /// delivery may publish at once).
    pub delay: Duration,
}

/// An at-least-once broker with one queue per topic.
pub trait Broker: Send + Sync + 'static {
    /// The consuming side.
    type Source: Source;

    /// Publishes one message.
    fn publish(&self, msg: Outgoing) -> impl Future<Output = Result<(), BrokerError>> + Send;

    /// A source for one consumer of the topic.
    fn source(&self) -> Self::Source;
}

/// The error for a broker whose adapter is not plugged into the demo yet.
pub fn not_plugged_in(url: &BrokerUrl) -> DemoError {
    UrlError::NotYet {
        what: "broker",
        url: url.to_string(),
        why: "no adapter for it is plugged into idemq-cli yet",
    }
    .into()
}
