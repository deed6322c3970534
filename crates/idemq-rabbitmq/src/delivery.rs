//! A RabbitMQ delivery as the engine sees it, and how it is settled.

use std::sync::Arc;
use std::time::Duration;

use idemq_core::adapter::{DeadLetterReason, Delivery};
use idemq_core::time::now_ms;
use idemq_core::Message;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel};

use crate::error::AmqpError;
use crate::headers;
use crate::publish::{send_confirmed, PERSISTENT};
use crate::topology::Topology;

/// What every delivery of one channel shares to settle itself.
pub(crate) struct Settler {
    pub(crate) channel: Channel,
    pub(crate) topology: Arc<Topology>,
}

/// One message received from the work queue.
///
/// It is a [`Message`] (the AMQP `message_id` property, string headers and the body) so
/// every [`KeyStrategy`](idemq_core::KeyStrategy) works on it, and a [`Delivery`] that
/// settles itself on RabbitMQ:
///
/// - **ack**: `basic.ack`;
/// - **redeliver**: a copy goes to the delay or retry tier queue with the attempt and error
///   headers, and only once the broker confirmed the copy is the original acked;
/// - **dead-letter**: a copy goes to the DLQ with the reason headers, confirmed, then the
///   original is acked.
///
/// If the connection drops between the confirmed copy and the ack, both come back: the
/// engine makes the second one a duplicate.
pub struct AmqpDelivery {
    inner: lapin::message::Delivery,
    settler: Arc<Settler>,
}

impl std::fmt::Debug for AmqpDelivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpDelivery")
            .field("delivery_tag", &self.inner.delivery_tag)
            .field("message_id", &self.message_id())
            .field("attempt", &self.attempt())
            .field("redelivered", &self.inner.redelivered)
            .finish()
    }
}

impl AmqpDelivery {
    pub(crate) fn new(inner: lapin::message::Delivery, settler: Arc<Settler>) -> Self {
        Self { inner, settler }
    }

    /// The message body.
    pub fn data(&self) -> &[u8] {
        &self.inner.data
    }

    /// The AMQP properties (content type, message id, headers, ...).
    pub fn properties(&self) -> &BasicProperties {
        &self.inner.properties
    }

    /// The headers, if any.
    pub fn headers(&self) -> Option<&FieldTable> {
        self.inner.properties.headers().as_ref()
    }

    /// True when the broker delivered this message before (a connection or channel was lost
    /// before it was acked).
    pub fn redelivered(&self) -> bool {
        self.inner.redelivered
    }

    /// The delivery tag on its channel.
    pub fn delivery_tag(&self) -> u64 {
        self.inner.delivery_tag
    }

    /// The handler error recorded by the last failed attempt, if this is a retry.
    pub fn last_error(&self) -> Option<&str> {
        headers::text(self.headers(), headers::ERROR)
    }

    /// Headers for the copy: the original's, updated.
    fn copy_headers(&self) -> FieldTable {
        self.headers().cloned().unwrap_or_default()
    }

    /// Publishes a copy to `queue` through the default exchange, waits for the confirm,
    /// then acks the original.
    async fn move_to(self, queue: &str, headers: FieldTable) -> Result<(), AmqpError> {
        let props = self
            .inner
            .properties
            .clone()
            .with_headers(headers)
            .with_delivery_mode(PERSISTENT);
        send_confirmed(&self.settler.channel, "", queue, &self.inner.data, props).await?;
        self.ack_original().await
    }

    async fn ack_original(self) -> Result<(), AmqpError> {
        if self.inner.acker.ack(BasicAckOptions::default()).await? {
            Ok(())
        } else {
            // The channel died: the broker puts the message back on its own.
            Err(AmqpError::ChannelClosed)
        }
    }
}

impl Drop for AmqpDelivery {
    /// A delivery dropped unsettled (its task died mid-handler, or its copy could not be
    /// published) goes straight back to the queue instead of sitting unacked until the
    /// channel closes. Settled deliveries have used their acker, so this does nothing.
    fn drop(&mut self) {
        if !self.inner.acker.usable() {
            return;
        }
        let acker = self.inner.acker.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let requeue = BasicNackOptions {
                    requeue: true,
                    multiple: false,
                };
                let _ = acker.nack(requeue).await;
            });
        }
    }
}

impl Message for AmqpDelivery {
    fn payload(&self) -> &[u8] {
        &self.inner.data
    }

    fn message_id(&self) -> Option<&str> {
        self.inner
            .properties
            .message_id()
            .as_ref()
            .map(|id| id.as_str())
    }

    /// String, short-string and byte-array headers; other types read as absent.
    fn header(&self, name: &str) -> Option<&[u8]> {
        headers::bytes(self.headers(), name)
    }
}

impl Delivery for AmqpDelivery {
    type Error = AmqpError;

    fn attempt(&self) -> u32 {
        headers::int(self.headers(), headers::ATTEMPT)
            .and_then(|a| u32::try_from(a).ok())
            .filter(|a| *a >= 1)
            .unwrap_or(1)
    }

    async fn ack(self) -> Result<(), AmqpError> {
        self.ack_original().await
    }

    async fn redeliver(
        self,
        delay: Duration,
        attempt: u32,
        error: Option<&str>,
    ) -> Result<(), AmqpError> {
        let settler = self.settler.clone();
        let topology = &settler.topology;
        let mut h = self.copy_headers();
        headers::set_int(&mut h, headers::ATTEMPT, attempt.into());
        let queue = match error {
            // A failed attempt: note it and wait in its backoff tier.
            Some(error) => {
                let now = now_ms();
                headers::set_text(&mut h, headers::ERROR, error);
                if headers::int(Some(&h), headers::FIRST_FAILURE).is_none() {
                    headers::set_int(&mut h, headers::FIRST_FAILURE, now);
                }
                headers::set_int(&mut h, headers::LAST_FAILURE, now);
                topology.tier_for(delay).queue.clone()
            }
            // In progress elsewhere (or the store could not decide): come back later
            // without spending an attempt, never spinning on the work queue.
            None => topology.delay_tier().queue.clone(),
        };
        self.move_to(&queue, h).await
    }

    async fn dead_letter(self, reason: &DeadLetterReason) -> Result<(), AmqpError> {
        let settler = self.settler.clone();
        let topology = &settler.topology;
        let mut h = self.copy_headers();
        let now = now_ms();
        let attempts = match reason {
            DeadLetterReason::RetriesExhausted { attempts, .. } => *attempts,
            _ => self.attempt(),
        };
        headers::set_text(&mut h, headers::REASON, reason.kind());
        headers::set_text(&mut h, headers::ERROR, &reason.to_string());
        headers::set_int(&mut h, headers::ATTEMPTS, attempts.into());
        headers::set_text(&mut h, headers::ORIGINAL_QUEUE, topology.queue());
        if headers::int(Some(&h), headers::FIRST_FAILURE).is_none() {
            headers::set_int(&mut h, headers::FIRST_FAILURE, now);
        }
        headers::set_int(&mut h, headers::LAST_FAILURE, now);
        if let DeadLetterReason::Conflict { existing, incoming } = reason {
            headers::set_text(&mut h, headers::EXISTING_FINGERPRINT, &existing.to_hex());
            if let Some(incoming) = incoming {
                headers::set_text(&mut h, headers::INCOMING_FINGERPRINT, &incoming.to_hex());
            }
        }
        self.move_to(topology.dead_letter_queue(), h).await
    }
}
