//! The keyed, idempotent producer.

use std::time::Duration;

use bytes::Bytes;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::ClientConfig;

use crate::error::KafkaError;
use crate::names::check_name;

/// The header carrying the producer's message id: the same on every retry copy of one
/// send, so a consumer may key on it ([`keys::message_id`](crate::keys::message_id)).
pub const MESSAGE_ID: &str = "x-idemq-message-id";

/// How long a send waits for the broker's acknowledgement.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// One record to send.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The topic.
    pub topic: String,
    /// The record key: the business key (order id). Records of one key go to one
    /// partition, in order.
    pub key: Option<String>,
    /// The value.
    pub payload: Bytes,
    /// The message id ([`MESSAGE_ID`]); `None` makes a fresh one. The same id sent twice is
    /// a duplicate send, as a producer retry is.
    pub id: Option<String>,
    /// Other headers.
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Outgoing {
    /// `payload` on `topic`, with no key.
    pub fn new(topic: impl Into<String>, payload: impl Into<Bytes>) -> Self {
        Self {
            topic: topic.into(),
            key: None,
            payload: payload.into(),
            id: None,
            headers: Vec::new(),
        }
    }

    /// With the record key (business key) `key`.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// With the message id `id`.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// With the header `name` = `value`.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// A started producer with `enable.idempotence` (the broker drops the producer's own
/// retries of one batch) that waits for every record to be acknowledged by all replicas.
#[derive(Clone)]
pub struct Producer {
    inner: FutureProducer,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer").finish_non_exhaustive()
    }
}

impl Producer {
    /// A producer of the cluster at `bootstrap` (`host:port[,host:port]`).
    pub fn new(bootstrap: &str) -> Result<Self, KafkaError> {
        let inner = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "1")
            .create()?;
        Ok(Self { inner })
    }

    /// Sends `out` and waits until the broker stored it; returns its partition and offset.
    pub async fn send(&self, out: Outgoing) -> Result<(i32, i64), KafkaError> {
        check_name("topic", &out.topic)?;
        let id = out
            .id
            .unwrap_or_else(|| uuid::Uuid::now_v7().simple().to_string());
        let mut headers = OwnedHeaders::new().insert(Header {
            key: MESSAGE_ID,
            value: Some(id.as_bytes()),
        });
        for (name, value) in &out.headers {
            headers = headers.insert(Header {
                key: name,
                value: Some(value),
            });
        }
        self.send_record(
            &out.topic,
            out.key.as_deref().map(str::as_bytes),
            &out.payload,
            headers,
        )
        .await
    }

    /// Sends a record built elsewhere (a retry or dead-letter copy).
    pub(crate) async fn send_record(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        payload: &[u8],
        headers: OwnedHeaders,
    ) -> Result<(i32, i64), KafkaError> {
        let mut record = FutureRecord::<[u8], [u8]>::to(topic)
            .payload(payload)
            .headers(headers);
        if let Some(key) = key {
            record = record.key(key);
        }
        let delivery = self
            .inner
            .send(record, Timeout::After(SEND_TIMEOUT))
            .await
            .map_err(|(error, _)| KafkaError::Produce {
                topic: topic.to_owned(),
                error,
            })?;
        Ok((delivery.partition, delivery.offset))
    }
}
