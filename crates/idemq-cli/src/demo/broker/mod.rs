//! The broker seen by the demo: publish messages, receive deliveries.
//!
//! A broker adapter plugs in by implementing [`Broker`] with its own
//! [`Delivery`] type; the consumer loop and
//! [`process`](idemq_core::adapter::process) stay the same for every broker.

pub mod amqp;
pub mod memory;

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use idemq_core::adapter::Delivery;

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

/// What a receive produced.
#[derive(Debug)]
pub enum Received<D> {
    /// A delivery to process.
    Delivery(D),
    /// Nothing arrived within the wait.
    Idle,
    /// The broker will deliver nothing more (the in-memory broker once closed and drained).
    Closed,
}

/// An at-least-once broker with one queue per topic.
pub trait Broker: Send + Sync + 'static {
    /// The broker's delivery, settled through the adapter contract.
    type Delivery: Delivery + 'static;

    /// Publishes one message.
    fn publish(&self, msg: Outgoing) -> impl Future<Output = Result<(), BrokerError>> + Send;

    /// Waits up to `wait` for the next delivery.
    fn recv(
        &self,
        wait: Duration,
    ) -> impl Future<Output = Result<Received<Self::Delivery>, BrokerError>> + Send;
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
