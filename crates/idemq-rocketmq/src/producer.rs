//! The keyed producer: the business key as the message key, the producer's unique id kept.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use cheetah_string::CheetahString;
use rocketmq_client_rust::DefaultMQProducer;
use rocketmq_model::common::message::message_accessor::MessageAccessor;
use rocketmq_model::common::message::message_single::Message;
use rocketmq_model::common::message::{MessageConst, MessageTrait};
use rocketmq_model::result::{SendResult, SendStatus};
use tokio::sync::RwLock;

use crate::client::Client;
use crate::error::RmqError;
use crate::names::check_name;

/// The topic every broker accepts as the template for new topics.
const TOPIC_TEMPLATE: &str = "TBW102";

/// One message to send.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The topic.
    pub topic: String,
    /// The body.
    pub body: Bytes,
    /// The business key (order id, payment serial), sent as the message key: consumers key
    /// on it with [`keys::business_key`](crate::keys::business_key).
    pub key: Option<String>,
    /// The producer's unique id (`UNIQ_KEY`). `None` lets the client make one; the same id
    /// sent twice is a duplicate send, as a producer retry is.
    pub id: Option<String>,
    /// A tag, for consumers that subscribe by tag.
    pub tag: Option<String>,
    /// User properties.
    pub properties: Vec<(String, String)>,
    /// Hold the message back at least this long before its first delivery (rounded up to
    /// the broker's next [delay level](crate::delay)).
    pub delay: Option<Duration>,
}

impl Outgoing {
    /// `body` on `topic`, with no key.
    pub fn new(topic: impl Into<String>, body: impl Into<Bytes>) -> Self {
        Self {
            topic: topic.into(),
            body: body.into(),
            key: None,
            id: None,
            tag: None,
            properties: Vec::new(),
            delay: None,
        }
    }

    /// Delivered no sooner than `delay` from now (at the broker's next delay level).
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay).filter(|d| !d.is_zero());
        self
    }

    /// With the business key `key`.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// With the unique id `id` (`UNIQ_KEY`).
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// With the tag `tag`.
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tag = Some(tag.into());
        self
    }

    /// With the user property `name` = `value`.
    pub fn property(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.push((name.into(), value.into()));
        self
    }

    pub(crate) fn into_message(self) -> Result<Message, RmqError> {
        check_name("topic", &self.topic)?;
        let mut builder = Message::builder()
            .topic(self.topic.as_str())
            .body(self.body);
        if let Some(key) = self.key {
            builder = builder.key(key);
        }
        if let Some(tag) = self.tag {
            builder = builder.tags(tag);
        }
        if let Some(delay) = self.delay {
            builder = builder.delay_level(crate::delay::level_for(delay));
        }
        for (name, value) in self.properties {
            builder = builder
                .raw_property(name, value)
                .map_err(|e| RmqError::Message(e.to_string()))?;
        }
        let mut msg = builder
            .build()
            .map_err(|e| RmqError::Message(e.to_string()))?;
        if let Some(id) = self.id {
            // The client only makes an id when none is set, so a resend keeps this one.
            put(
                &mut msg,
                MessageConst::PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX,
                &id,
            );
        }
        Ok(msg)
    }
}

pub(crate) fn put<M: MessageTrait>(msg: &mut M, name: &str, value: &str) {
    MessageAccessor::put_property(
        msg,
        CheetahString::from_slice(name),
        CheetahString::from_slice(value),
    );
}

/// A started RocketMQ producer that waits for the broker to store each message.
///
/// ```no_run
/// # async fn demo() -> Result<(), idemq_rocketmq::RmqError> {
/// use idemq_rocketmq::{Client, Outgoing, Producer};
/// let client = Client::new("127.0.0.1:9876")?;
/// let producer = Producer::start(&client, "orders-producer").await?;
/// producer.create_topic("orders", 4).await?;
/// producer.send(Outgoing::new("orders", r#"{"order":"o-1"}"#).key("o-1")).await?;
/// producer.shutdown().await;
/// # Ok(()) }
/// ```
pub struct Producer {
    inner: RwLock<DefaultMQProducer>,
    group: String,
}

impl Producer {
    /// Starts a producer of group `group` (a fresh instance name, so it never shares a
    /// client instance with a consumer of this process).
    pub async fn start(client: &Client, group: &str) -> Result<Self, RmqError> {
        check_name("producer group", group)?;
        let instance = format!("{group}-{}", uuid::Uuid::now_v7().simple());
        let mut producer = DefaultMQProducer::builder(client.runtime())
            .client_config(client.config(&instance))
            .producer_group(group.to_string())
            .send_msg_timeout(5_000)
            .build();
        producer.start().await?;
        Ok(Self {
            inner: RwLock::new(producer),
            group: group.to_string(),
        })
    }

    /// The producer group.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// Sends `msg` and waits until the broker has stored it.
    pub async fn send(&self, msg: Outgoing) -> Result<SendResult, RmqError> {
        let topic = msg.topic.clone();
        let msg = msg.into_message()?;
        self.send_message(topic, msg).await
    }

    /// Sends a message built elsewhere (a retry or dead-letter copy) and waits until the
    /// broker has stored it; `topic` names it in the error.
    pub(crate) async fn send_message(
        &self,
        topic: String,
        msg: Message,
    ) -> Result<SendResult, RmqError> {
        let sent = self.inner.read().await.send(msg).await?;
        match sent {
            Some(r) if r.send_status == SendStatus::SendOk => Ok(r),
            Some(r) => Err(RmqError::NotStored {
                topic,
                status: format!("{:?}", r.send_status),
            }),
            None => Err(RmqError::NotStored {
                topic,
                status: "no result".into(),
            }),
        }
    }

    /// Creates `topic` with `queues` read and write queues, or updates it; then waits until
    /// the name server routes it, so a consumer started next finds it at once.
    pub async fn create_topic(&self, topic: &str, queues: u32) -> Result<(), RmqError> {
        check_name("topic", topic)?;
        let queues = i32::try_from(queues.clamp(1, 64)).unwrap_or(4);
        let mut producer = self.inner.write().await;
        producer
            .create_topic(TOPIC_TEMPLATE, topic, queues, HashMap::new())
            .await?;
        let mut last = None;
        for _ in 0..100 {
            match producer.fetch_publish_message_queues(topic).await {
                Ok(q) if !q.is_empty() => return Ok(()),
                Ok(_) => {}
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(last.map_or_else(
            || RmqError::Message(format!("topic {topic} has no route after creation")),
            RmqError::from,
        ))
    }

    /// Stops the producer.
    pub async fn shutdown(&self) {
        self.inner.write().await.shutdown().await;
    }
}
