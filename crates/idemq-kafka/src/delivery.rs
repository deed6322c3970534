//! One record as a delivery of the runtime, and how it settles.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use idemq_consumer::headers;
use idemq_consumer::tracker::{PartitionLog, Ticket};
use idemq_core::adapter::{DeadLetterReason, Delivery};
use idemq_core::time::{duration_ms, now_ms};
use idemq_core::Message;
use rdkafka::message::{Header, Headers, OwnedHeaders, OwnedMessage};
use rdkafka::Message as _;
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::Notify;

use crate::error::KafkaError;
use crate::ordering::{LaneGuard, Retries};
use crate::producer::{Producer, MESSAGE_ID};

/// The header of a retry copy saying when it is due (Unix milliseconds): the session holds
/// it back until then.
pub const DUE: &str = "x-idemq-due";

/// A partition of a topic.
pub(crate) type Part = (String, i32);

/// What the deliveries of one session share.
pub(crate) struct Shared {
    pub(crate) log: PartitionLog<Part>,
    pub(crate) producer: Producer,
    pub(crate) topic: String,
    pub(crate) retry_topic: String,
    pub(crate) dead_letter_topic: String,
    /// Woken when a partition's committable offset moved.
    pub(crate) commit: Notify,
    /// Set when the session closed: its records come again to the next owner, so a settle
    /// now is refused instead of reported done.
    pub(crate) closed: AtomicBool,
    pub(crate) retries: Retries,
    /// Takes records retried in place back to the session, until they are due.
    pub(crate) again: UnboundedSender<Again>,
}

/// A record retried in place, going back to its session until `due` (Unix ms).
pub(crate) struct Again {
    pub(crate) due: i64,
    pub(crate) delivery: KafkaDelivery,
}

/// What a record retried in place carries from one attempt to the next (a retry copy
/// carries it in headers).
#[derive(Debug, Clone, Copy)]
struct InPlace {
    attempt: u32,
    first_failure: Option<i64>,
}

/// A Kafka record delivered by a [`KafkaSession`](crate::KafkaSession).
///
/// It is a [`Message`] whose message id is the [`MESSAGE_ID`] header, whose headers are the
/// record's, and whose payload is the value. As a [`Delivery`] it settles itself:
///
/// - **ack**: settled; the partition's offset is committed once every record before it is
///   settled too;
/// - **redeliver**: a copy with the attempt, the error and when it is [due](DUE) goes to
///   the retry topic (`<topic>.idemq-retry`, consumed by the same group), then settled;
///   retried [in place](Retries::InPlace), the record itself waits in its session until it
///   is due, unsettled, holding its place in its lane;
/// - **dead letter**: a copy with the reason, the error, the attempts, the original topic
///   and the failure times goes to `<topic>.idemq-dlt`, then settled;
/// - **dropped unsettled** (a handler task aborted): a copy due a second later, then
///   settled (in place: the record again a second later); a record whose partition was
///   revoked meanwhile is left to the partition's next owner. After the session closed,
///   every settle is refused with [`KafkaError::Closed`]: the record comes again to the
///   partition's next owner. A copy that cannot be stored leaves the record unsettled:
///   the partition's commits stop before it and the next owner gets it again.
pub struct KafkaDelivery {
    record: OwnedMessage,
    ticket: Option<Ticket<Part>>,
    shared: Arc<Shared>,
    /// Held while the record runs, if its lane is ordered.
    lane: Option<LaneGuard>,
    in_place: Option<InPlace>,
}

impl std::fmt::Debug for KafkaDelivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaDelivery")
            .field("topic", &self.record.topic())
            .field("partition", &self.record.partition())
            .field("offset", &self.record.offset())
            .finish_non_exhaustive()
    }
}

impl KafkaDelivery {
    pub(crate) fn new(record: OwnedMessage, ticket: Ticket<Part>, shared: Arc<Shared>) -> Self {
        Self {
            record,
            ticket: Some(ticket),
            shared,
            lane: None,
            in_place: None,
        }
    }

    /// Holds `lane` until this record is done with.
    pub(crate) fn hold(&mut self, lane: LaneGuard) {
        self.lane = Some(lane);
    }

    /// Whether the record is still its partition's to settle: not settled, not revoked.
    pub(crate) fn is_current(&self) -> bool {
        self.ticket
            .as_ref()
            .is_some_and(|t| self.shared.log.is_current(t))
    }

    /// The record key.
    pub fn key(&self) -> Option<&[u8]> {
        self.record.key()
    }

    /// The topic it was read from (the retry topic for a retry copy).
    pub fn topic(&self) -> &str {
        self.record.topic()
    }

    /// Its partition.
    pub fn partition(&self) -> i32 {
        self.record.partition()
    }

    /// Its offset.
    pub fn offset(&self) -> i64 {
        self.record.offset()
    }

    /// The header `name` as text.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.header(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    fn int(&self, name: &str) -> Option<i64> {
        self.text(name).and_then(|v| v.parse().ok())
    }

    /// When a retry copy is due, if it is one.
    pub(crate) fn due(&self) -> Option<i64> {
        self.int(DUE)
    }

    /// When this record first failed, if it did.
    fn first_failure(&self) -> Option<i64> {
        match self.in_place {
            Some(p) => p.first_failure,
            None => self.int(headers::FIRST_FAILURE),
        }
    }

    /// Sends the record back to its session for `delay`, as attempt `attempt`.
    fn put_back(mut self, delay: Duration, attempt: u32, failed: bool) -> Result<(), KafkaError> {
        self.check_open()?;
        let due = now_ms() + duration_ms(delay);
        let first_failure = self.first_failure();
        self.in_place = Some(InPlace {
            attempt,
            first_failure: first_failure.or(failed.then(now_ms)),
        });
        let again = self.shared.again.clone();
        match again.send(Again {
            due,
            delivery: self,
        }) {
            Ok(()) => Ok(()),
            // The session is gone: its next owner reads the record again.
            Err(returned) => {
                returned.0.delivery.forget();
                Err(KafkaError::Closed)
            }
        }
    }

    /// Drops the record unsettled, leaving it to the partition's next owner: its
    /// partition's commits stop before it.
    pub(crate) fn forget(mut self) {
        self.ticket = None;
    }

    /// Takes the parts out, leaving a shell whose drop does nothing.
    fn take(&mut self) -> KafkaDelivery {
        KafkaDelivery {
            record: self.record.clone(),
            ticket: self.ticket.take(),
            shared: self.shared.clone(),
            lane: self.lane.take(),
            in_place: self.in_place,
        }
    }

    fn check_open(&self) -> Result<(), KafkaError> {
        if self.shared.closed.load(Ordering::SeqCst) {
            Err(KafkaError::Closed)
        } else {
            Ok(())
        }
    }

    fn settle(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            if self.shared.log.settle(&ticket).moved() {
                self.shared.commit.notify_one();
            }
        }
    }

    /// The record's headers but `replaced`, followed by `set`.
    fn headers_with(&self, set: &[(&str, String)]) -> OwnedHeaders {
        let mut out = OwnedHeaders::new();
        if let Some(hs) = self.record.headers() {
            for h in hs.iter() {
                if !set.iter().any(|(name, _)| *name == h.key) {
                    out = out.insert(Header {
                        key: h.key,
                        value: h.value,
                    });
                }
            }
        }
        for (name, value) in set {
            out = out.insert(Header {
                key: name,
                value: Some(value.as_bytes()),
            });
        }
        out
    }

    /// Stores a copy on `topic` with `set` headers, then settles the record.
    async fn move_to(mut self, topic: &str, set: &[(&str, String)]) -> Result<(), KafkaError> {
        self.check_open()?;
        let headers = self.headers_with(set);
        self.shared
            .producer
            .send_record(topic, self.record.key(), self.payload(), headers)
            .await?;
        self.settle();
        Ok(())
    }

    /// The headers of a retry copy: its attempt, when it is due, and the failure it
    /// follows.
    fn retry_headers(
        &self,
        delay: Duration,
        attempt: u32,
        error: Option<&str>,
    ) -> Vec<(&'static str, String)> {
        let now = now_ms();
        let mut set = vec![
            (headers::ATTEMPT, attempt.to_string()),
            (DUE, (now + duration_ms(delay)).to_string()),
        ];
        if let Some(error) = error {
            set.push((headers::ERROR, error.to_owned()));
            let first = self.first_failure().unwrap_or(now);
            set.push((headers::FIRST_FAILURE, first.to_string()));
            set.push((headers::LAST_FAILURE, now.to_string()));
        }
        set
    }
}

impl Drop for KafkaDelivery {
    /// A delivery dropped unsettled (its handler was aborted) comes back a second later,
    /// without spending an attempt.
    fn drop(&mut self) {
        if self.shared.closed.load(Ordering::SeqCst) || !self.is_current() {
            return;
        }
        let copy = self.take();
        let (again, attempt) = (Duration::from_secs(1), copy.attempt());
        if copy.shared.retries == Retries::InPlace {
            // No await needed: the session takes it back.
            if copy.put_back(again, attempt, false).is_err() {
                tracing::debug!(
                    "a dropped delivery's session is gone: its partition's next owner gets it"
                );
            }
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            if let Err(e) = copy.redeliver(again, attempt, None).await {
                tracing::warn!(error = %e, "a dropped delivery could not be copied back: its partition waits for the next owner");
            }
        });
    }
}

impl Message for KafkaDelivery {
    fn payload(&self) -> &[u8] {
        self.record.payload().unwrap_or_default()
    }

    /// The [`MESSAGE_ID`] header; a blank one is none.
    fn message_id(&self) -> Option<&str> {
        self.text(MESSAGE_ID).filter(|id| !id.trim().is_empty())
    }

    fn header(&self, name: &str) -> Option<&[u8]> {
        let hs = self.record.headers()?;
        hs.iter().find(|h| h.key == name).and_then(|h| h.value)
    }
}

impl Delivery for KafkaDelivery {
    type Error = KafkaError;

    fn attempt(&self) -> u32 {
        if let Some(p) = self.in_place {
            return p.attempt;
        }
        self.int(headers::ATTEMPT)
            .and_then(|a| u32::try_from(a).ok())
            .unwrap_or(1)
            .max(1)
    }

    async fn ack(mut self) -> Result<(), KafkaError> {
        self.check_open()?;
        self.settle();
        Ok(())
    }

    async fn redeliver(
        self,
        delay: Duration,
        attempt: u32,
        error: Option<&str>,
    ) -> Result<(), KafkaError> {
        if self.shared.retries == Retries::InPlace {
            return self.put_back(delay, attempt, error.is_some());
        }
        let set = self.retry_headers(delay, attempt, error);
        let topic = self.shared.retry_topic.clone();
        self.move_to(&topic, &set).await
    }

    async fn dead_letter(self, reason: &DeadLetterReason) -> Result<(), KafkaError> {
        let now = now_ms();
        let attempts = match reason {
            DeadLetterReason::RetriesExhausted { attempts, .. } => *attempts,
            _ => self.attempt(),
        };
        let mut set = vec![
            (headers::REASON, reason.kind().to_owned()),
            (headers::ERROR, reason.to_string()),
            (headers::ATTEMPTS, attempts.to_string()),
            (headers::ORIGINAL_QUEUE, self.shared.topic.clone()),
            (
                headers::FIRST_FAILURE,
                self.first_failure().unwrap_or(now).to_string(),
            ),
            (headers::LAST_FAILURE, now.to_string()),
        ];
        if let DeadLetterReason::Conflict { existing, incoming } = reason {
            set.push((headers::EXISTING_FINGERPRINT, existing.to_hex()));
            if let Some(incoming) = incoming {
                set.push((headers::INCOMING_FINGERPRINT, incoming.to_hex()));
            }
        }
        let topic = self.shared.dead_letter_topic.clone();
        self.move_to(&topic, &set).await
    }
}
