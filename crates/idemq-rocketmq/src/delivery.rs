//! A RocketMQ message as the engine sees it, and how it is settled.

use std::sync::Arc;
use std::time::Duration;

use idemq_consumer::headers;
use idemq_core::adapter::{DeadLetterReason, Delivery};
use idemq_core::time::now_ms;
use idemq_core::Message;
use rocketmq_model::common::message::message_accessor::MessageAccessor;
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::message_single::Message as RmqMessage;
use rocketmq_model::common::message::{MessageConst, MessageTrait};

use crate::delay::level_for;
use crate::error::RmqError;
use crate::latch::{Latch, Settled, Slot};
use crate::names::{dead_letter_topic, retry_topic};

use crate::producer::{put, Producer};

/// What every delivery of one session shares to settle itself.
pub(crate) struct Settler {
    pub(crate) producer: Producer,
    /// Where a dropped delivery's copy is sent from: `Drop` cannot wait.
    pub(crate) runtime: tokio::runtime::Handle,
    pub(crate) group: String,
    pub(crate) orderly: bool,
}

/// One message handed to a listener call.
///
/// It is a [`Message`] whose message id is the producer's unique id (`UNIQ_KEY`, the same
/// on every copy of one send; the broker's offset id changes on each retry copy), whose
/// headers are the user properties, and whose payload is the body. As a [`Delivery`] it
/// settles itself:
///
/// - **ack**: done; the listener call commits once all its messages are done;
/// - **redeliver**, concurrent listener: a copy with the attempt and error properties goes
///   to the group's retry topic ([`retry_topic`]) at the smallest delay level that waits
///   long enough, then the original is done; orderly listener: the queue is suspended and
///   the client offers the call again;
/// - **dead-letter**: a copy with the reason properties goes to the group's dead-letter
///   topic (`%DLQ%<group>`), then the original is done.
///
/// Dropped unsettled (its handler task died or was aborted), it comes back a second later
/// as a copy on the retry topic, its attempt unchanged (orderly: the queue is suspended for
/// a second); only when that copy cannot be stored does the whole listener call fail, and
/// the broker's own ladder delivers it again (first after 10 s). The engine makes any copy
/// already settled a duplicate.
pub struct RmqDelivery {
    msg: MessageExt,
    slot: Option<Slot>,
    settler: Arc<Settler>,
}

impl std::fmt::Debug for RmqDelivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RmqDelivery")
            .field("topic", &self.topic())
            .field("queue_id", &self.msg.queue_id())
            .field("queue_offset", &self.msg.queue_offset())
            .field("message_id", &self.message_id())
            .field("attempt", &self.attempt())
            .finish()
    }
}

impl RmqDelivery {
    pub(crate) fn new(msg: MessageExt, latch: Arc<Latch>, settler: Arc<Settler>) -> Self {
        Self {
            msg,
            slot: Some(Slot::new(latch)),
            settler,
        }
    }

    /// The message body.
    pub fn body(&self) -> &[u8] {
        self.msg.message_inner().body_slice()
    }

    /// The message keys (the producer's business keys), in order.
    pub fn keys(&self) -> Vec<&str> {
        self.property(MessageConst::PROPERTY_KEYS)
            .map(|k| {
                k.split(MessageConst::KEY_SEPARATOR)
                    .filter(|k| !k.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The tag, if any.
    pub fn tag(&self) -> Option<&str> {
        self.property(MessageConst::PROPERTY_TAGS)
    }

    /// The topic the message was sent to (a retry copy reports its original topic).
    pub fn topic(&self) -> &str {
        self.property(headers::ORIGINAL_QUEUE)
            .or_else(|| self.property(MessageConst::PROPERTY_RETRY_TOPIC))
            .unwrap_or_else(|| self.msg.topic().as_str())
    }

    /// A property (user or system), if set.
    pub fn property(&self, name: &str) -> Option<&str> {
        self.msg.properties().get(name).map(|v| v.as_str())
    }

    /// How many times the broker delivered this message before.
    pub fn reconsume_times(&self) -> i32 {
        self.msg.reconsume_times()
    }

    /// The handler error recorded by the last failed attempt, if this is a retry.
    pub fn last_error(&self) -> Option<&str> {
        self.property(headers::ERROR)
    }

    /// The message as the client received it.
    pub fn message_ext(&self) -> &MessageExt {
        &self.msg
    }

    fn int(&self, name: &str) -> Option<i64> {
        self.property(name).and_then(|v| v.parse().ok())
    }

    /// A copy of the message for `topic`, with its properties, keys and unique id.
    fn copy_to(&self, topic: &str) -> Result<RmqMessage, RmqError> {
        let body = bytes::Bytes::copy_from_slice(self.body());
        let mut copy = RmqMessage::builder()
            .topic(topic)
            .body(body)
            .build()
            .map_err(|e| RmqError::Message(e.to_string()))?;
        MessageAccessor::set_properties(&mut copy, self.msg.get_properties().clone());
        copy.clear_property(MessageConst::PROPERTY_DELAY_TIME_LEVEL);
        put(&mut copy, headers::ORIGINAL_QUEUE, self.topic());
        if self
            .property(MessageConst::PROPERTY_ORIGIN_MESSAGE_ID)
            .is_none()
        {
            put(
                &mut copy,
                MessageConst::PROPERTY_ORIGIN_MESSAGE_ID,
                self.msg.msg_id().as_str(),
            );
        }
        Ok(copy)
    }

    /// A copy for the group's retry topic, delivered after at least `delay`.
    fn retry_copy(&self, delay: Duration) -> Result<(String, RmqMessage), RmqError> {
        let topic = retry_topic(&self.settler.group);
        let mut copy = self.copy_to(&topic)?;
        copy.set_delay_time_level(level_for(delay));
        Ok((topic, copy))
    }

    /// Notes a failure now on `copy`: its last failure, and its first unless one is known.
    fn stamp_failure(&self, copy: &mut RmqMessage) {
        let now = now_ms().to_string();
        if self.property(headers::FIRST_FAILURE).is_none() {
            put(copy, headers::FIRST_FAILURE, &now);
        }
        put(copy, headers::LAST_FAILURE, &now);
    }

    /// Stores `copy` on `topic`, then marks the original done.
    async fn move_to(mut self, topic: String, copy: RmqMessage) -> Result<(), RmqError> {
        self.settler.producer.send_message(topic, copy).await?;
        self.finish(Settled::Done)
    }

    /// Records the outcome with the listener call; an error when the call was answered
    /// already (the session closed), since the broker then redelivers the message.
    fn finish(&mut self, how: Settled) -> Result<(), RmqError> {
        match self.slot.take().map(|slot| slot.settle(how)) {
            Some(true) => Ok(()),
            _ => Err(RmqError::Closed),
        }
    }
}

impl Drop for RmqDelivery {
    fn drop(&mut self) {
        let Some(slot) = self.slot.take() else {
            return;
        };
        if slot.is_closed() {
            return;
        }
        if self.settler.orderly {
            slot.settle(Settled::Again(Duration::from_secs(1)));
            return;
        }
        let Ok((topic, copy)) = self.retry_copy(Duration::from_secs(1)) else {
            return;
        };
        let settler = self.settler.clone();
        // The slot travels with the copy: settled once it is stored, lost if the copy
        // fails or the task never runs.
        self.settler.runtime.spawn(async move {
            if settler.producer.send_message(topic, copy).await.is_ok() {
                slot.settle(Settled::Done);
            }
        });
    }
}

impl Message for RmqDelivery {
    fn payload(&self) -> &[u8] {
        self.body()
    }

    /// The producer's unique id (`UNIQ_KEY`); a blank one is none. Never the broker's
    /// message id: that is the stored copy's offset, new on every retry copy, so it would
    /// make each copy a new key.
    fn message_id(&self) -> Option<&str> {
        self.property(MessageConst::PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX)
            .filter(|id| !id.trim().is_empty())
    }

    /// User properties.
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.property(name).map(str::as_bytes)
    }
}

impl Delivery for RmqDelivery {
    type Error = RmqError;

    /// From the attempt property of a retry copy; the orderly listener counts the client's
    /// own re-offers.
    fn attempt(&self) -> u32 {
        if self.settler.orderly {
            return u32::try_from(self.msg.reconsume_times()).unwrap_or(0) + 1;
        }
        self.int(headers::ATTEMPT)
            .and_then(|a| u32::try_from(a).ok())
            .filter(|a| *a >= 1)
            .unwrap_or(1)
    }

    async fn ack(mut self) -> Result<(), RmqError> {
        self.finish(Settled::Done)
    }

    async fn redeliver(
        mut self,
        delay: Duration,
        attempt: u32,
        error: Option<&str>,
    ) -> Result<(), RmqError> {
        if self.settler.orderly {
            return self.finish(Settled::Again(delay));
        }
        let (topic, mut copy) = self.retry_copy(delay)?;
        put(&mut copy, headers::ATTEMPT, &attempt.to_string());
        if let Some(error) = error {
            put(&mut copy, headers::ERROR, error);
            self.stamp_failure(&mut copy);
        }
        self.move_to(topic, copy).await
    }

    async fn dead_letter(self, reason: &DeadLetterReason) -> Result<(), RmqError> {
        let topic = dead_letter_topic(&self.settler.group);
        let mut copy = self.copy_to(&topic)?;
        let attempts = match reason {
            DeadLetterReason::RetriesExhausted { attempts, .. } => *attempts,
            _ => self.attempt(),
        };
        put(&mut copy, headers::REASON, reason.kind());
        put(&mut copy, headers::ERROR, &reason.to_string());
        put(&mut copy, headers::ATTEMPTS, &attempts.to_string());
        self.stamp_failure(&mut copy);
        if let DeadLetterReason::Conflict { existing, incoming } = reason {
            put(&mut copy, headers::EXISTING_FINGERPRINT, &existing.to_hex());
            if let Some(incoming) = incoming {
                put(&mut copy, headers::INCOMING_FINGERPRINT, &incoming.to_hex());
            }
        }
        self.move_to(topic, copy).await
    }
}
