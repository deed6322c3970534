//! The publisher: every message leaves with its idempotency key and a broker confirm.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use lapin::options::ConfirmSelectOptions;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection};

use crate::connect::connect;
use crate::error::AmqpError;
use crate::headers;
use crate::publish::{confirmed, send, PERSISTENT};
use crate::topology::{short, Topology};

/// One message to publish.
#[derive(Debug, Clone, Default)]
pub struct Outgoing {
    /// The body.
    pub payload: Bytes,
    /// The idempotency key sent as `message_id`; `None` stamps a time-ordered UUID v7.
    pub key: Option<String>,
    /// Extra headers.
    pub headers: FieldTable,
}

impl Outgoing {
    /// A message with this body and a generated key.
    pub fn new(payload: impl Into<Bytes>) -> Self {
        Self {
            payload: payload.into(),
            ..Self::default()
        }
    }

    /// Uses a business key (an order id, a payment serial) as the message id: a producer
    /// that sends the same order twice then sends one key, and the consumer runs it once.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Adds a text header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        headers::set_text(&mut self.headers, name, value);
        self
    }
}

/// Publishes to a topology's exchange with publisher confirms.
///
/// Every message is persistent and carries its key as the AMQP `message_id`; `publish`
/// returns only once the broker confirmed it, and fails on a nack or an unroutable message.
pub struct Publisher {
    channel: Channel,
    exchange: String,
    routing_key: String,
    _conn: Option<Connection>,
}

impl Publisher {
    /// Opens its own connection to `uri`, declares the topology and enables confirms.
    pub async fn connect(uri: &str, topology: &Topology) -> Result<Self, AmqpError> {
        let name = format!("idemq-publisher-{}", topology.queue());
        let conn = connect(uri, &name).await?;
        let channel = conn.create_channel().await?;
        topology.declare(&channel).await?;
        let mut p = Self::on_channel(channel, topology).await?;
        p._conn = Some(conn);
        Ok(p)
    }

    /// Publishes on an existing channel (putting it in confirm mode).
    pub async fn on_channel(channel: Channel, topology: &Topology) -> Result<Self, AmqpError> {
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Self {
            channel,
            exchange: topology.exchange().to_owned(),
            routing_key: topology.queue().to_owned(),
            _conn: None,
        })
    }

    /// Publishes one message and waits for its confirm; returns its key.
    pub async fn publish(&self, msg: Outgoing) -> Result<String, AmqpError> {
        let (key, confirm) = self.send(msg).await?;
        confirmed(confirm, &self.exchange).await?;
        Ok(key)
    }

    /// Publishes many messages, pipelined, then waits for every confirm; returns their keys
    /// in order.
    pub async fn publish_all(
        &self,
        msgs: impl IntoIterator<Item = Outgoing>,
    ) -> Result<Vec<String>, AmqpError> {
        let mut keys = Vec::new();
        let mut confirms = Vec::new();
        for msg in msgs {
            let (key, confirm) = self.send(msg).await?;
            keys.push(key);
            confirms.push(confirm);
        }
        for confirm in confirms {
            confirmed(confirm, &self.exchange).await?;
        }
        Ok(keys)
    }

    async fn send(&self, msg: Outgoing) -> Result<(String, lapin::PublisherConfirm), AmqpError> {
        let key = match msg.key {
            Some(k) if k.is_empty() => {
                return Err(AmqpError::InvalidName(
                    k,
                    "an idempotency key cannot be empty",
                ))
            }
            Some(k) => k,
            None => uuid::Uuid::now_v7().to_string(),
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let props = BasicProperties::default()
            .with_message_id(short(&key)?)
            .with_delivery_mode(PERSISTENT)
            .with_timestamp(now)
            .with_headers(msg.headers);
        let confirm = send(
            &self.channel,
            &self.exchange,
            &self.routing_key,
            &msg.payload,
            props,
        )
        .await?;
        Ok((key, confirm))
    }
}
