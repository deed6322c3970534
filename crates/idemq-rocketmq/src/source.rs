//! RocketMQ as a source of the consumer runtime: a push consumer whose listener calls
//! become the runtime's batches.

use std::sync::Arc;

use idemq_consumer::{Closer, Consumer, Session, Source};
use idemq_core::adapter::RetryPolicy;
use rocketmq_client_rust::{DefaultMQPushConsumer, MQPushConsumer};
use rocketmq_model::common::consumer::consume_from_where::ConsumeFromWhere;
use tokio::sync::{mpsc, Mutex};

use crate::client::Client;
use crate::delivery::{RmqDelivery, Settler};
use crate::error::RmqError;
use crate::latch::Calls;
use crate::listener::{Concurrently, Forward, Orderly};
use crate::names::{check_name, dead_letter_topic, retry_topic};
use crate::producer::Producer;

/// Which listener the push consumer runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Listener {
    /// Queues consumed side by side, messages of one queue too; a retry is a copy on the
    /// group's retry topic.
    #[default]
    Concurrently,
    /// One queue's messages one call at a time, in queue order; a retry suspends the queue
    /// and offers the same call again.
    Orderly,
}

/// A RocketMQ topic consumed by a consumer group, as a source of the idemq runtime
/// ([`idemq_consumer::Consumer`]).
///
/// Each session starts a push consumer of its own client instance and a producer for retry
/// and dead-letter copies. Every listener call (up to [`batch`](RmqSource::batch) messages
/// of one queue) is one batch of the runtime, claimed with one `claim_batch`; the call
/// returns once each of its messages is settled, and fails as a whole when one was not, so
/// the broker delivers it again.
///
/// ```no_run
/// # use idemq_core::{Engine, EngineConfig, Scope, store::MemoryStore};
/// # use idemq_core::adapter::RetryPolicy;
/// # use idemq_rocketmq::{keys, Client, RmqDelivery, RmqSource};
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let client = Client::new("127.0.0.1:9876")?;
/// let engine = Engine::new(
///     MemoryStore::new(),
///     EngineConfig::new(Scope::new("stock/orders")?),
///     keys::business_key(),
/// );
/// let consumer = RmqSource::new(&client, "orders", "stock", RetryPolicy::default())?
///     .consumer()
///     .concurrency(8)
///     .spawn(idemq_consumer::run(engine, |d: &RmqDelivery| {
///         let body = d.body().to_vec();
///         async move { Ok::<_, std::io::Error>(body.len().to_string()) }
///     }));
/// consumer.wait_for_session(1).await;
/// consumer.shutdown().await;
/// # Ok(()) }
/// ```
pub struct RmqSource {
    client: Client,
    topic: String,
    group: String,
    policy: RetryPolicy,
    listener: Listener,
    batch: u32,
    from_first: bool,
}

impl RmqSource {
    /// `topic` consumed by consumer group `group`, retrying with `policy`.
    pub fn new(
        client: &Client,
        topic: impl Into<String>,
        group: impl Into<String>,
        policy: RetryPolicy,
    ) -> Result<Self, RmqError> {
        let (topic, group) = (topic.into(), group.into());
        check_name("topic", &topic)?;
        check_name("consumer group", &group)?;
        check_name("retry topic", &retry_topic(&group))?;
        Ok(Self {
            client: client.clone(),
            topic,
            group,
            policy,
            listener: Listener::default(),
            batch: 16,
            from_first: true,
        })
    }

    /// The listener kind (default [`Listener::Concurrently`]).
    pub fn listener(mut self, listener: Listener) -> Self {
        self.listener = listener;
        self
    }

    /// Messages per listener call (`consume_message_batch_max_size`, default 16).
    pub fn batch(mut self, n: u32) -> Self {
        self.batch = n.clamp(1, 1024);
        self
    }

    /// Whether a group with no committed offset starts from the first message of each
    /// queue (default) or from the last.
    pub fn from_first(mut self, on: bool) -> Self {
        self.from_first = on;
        self
    }

    /// The topic consumed.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The consumer group.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// A runtime consumer of this source with its retry policy, taking each listener call
    /// as one batch.
    pub fn consumer(self) -> Consumer<Self> {
        let policy = self.policy.clone();
        let name = format!("{}@{}", self.group, self.topic);
        let batch = self.batch as usize;
        Consumer::new(self, policy).name(name).batch(batch)
    }
}

impl Source for RmqSource {
    type Delivery = RmqDelivery;
    type Error = RmqError;
    type Session = RmqSession;

    async fn open(&self) -> Result<RmqSession, RmqError> {
        let instance = format!("{}-{}", self.group, uuid::Uuid::now_v7().simple());
        let producer = Producer::start(&self.client, &format!("{}-copies", self.group)).await?;
        // Dead letters are copies this adapter sends, so the topic must exist and be
        // readable before the first one.
        producer
            .create_topic(&dead_letter_topic(&self.group), 1)
            .await?;
        producer.create_topic(&retry_topic(&self.group), 2).await?;
        let settler = Arc::new(Settler {
            producer,
            runtime: tokio::runtime::Handle::current(),
            group: self.group.clone(),
            orderly: self.listener == Listener::Orderly,
        });
        let calls = Arc::new(Calls::default());
        // Calls wait for their batch to settle, so the channel never holds more than one
        // batch per blocked call.
        let (tx, rx) = mpsc::channel(1024);
        let forward = Forward {
            tx,
            calls: calls.clone(),
            settler: settler.clone(),
        };
        let from = if self.from_first {
            ConsumeFromWhere::ConsumeFromFirstOffset
        } else {
            ConsumeFromWhere::ConsumeFromLastOffset
        };
        let mut consumer = DefaultMQPushConsumer::builder(self.client.runtime())
            .client_config(self.client.config(&instance))
            .consumer_group(self.group.clone())
            .consume_from_where(from)
            .consume_message_batch_max_size(self.batch)
            // The runtime decides when to dead-letter; the broker's own limit only past it.
            .max_reconsume_times(i32::try_from(self.policy.max_attempts).unwrap_or(16).max(1) + 1)
            .await_termination_millis_when_shutdown(5_000)
            .build();
        consumer.subscribe(self.topic.as_str(), "*").await?;
        if self.listener == Listener::Concurrently {
            consumer.subscribe(retry_topic(&self.group), "*").await?;
        }
        match self.listener {
            Listener::Concurrently => {
                consumer.register_message_listener_concurrently(Concurrently(forward))
            }
            Listener::Orderly => consumer.register_message_listener_orderly(Orderly(forward)),
        }
        if let Err(e) = consumer.start().await {
            settler.producer.shutdown().await;
            return Err(e.into());
        }
        Ok(RmqSession {
            rx,
            calls,
            consumer: Arc::new(Mutex::new(Some(consumer))),
            settler,
        })
    }
}

/// One push consumer's listener calls.
pub struct RmqSession {
    rx: mpsc::Receiver<Vec<RmqDelivery>>,
    calls: Arc<Calls>,
    consumer: Arc<Mutex<Option<DefaultMQPushConsumer>>>,
    settler: Arc<Settler>,
}

impl Session for RmqSession {
    type Delivery = RmqDelivery;
    type Error = RmqError;

    /// The next listener call's messages. Cancel-safe: a call not taken stays in the
    /// channel.
    async fn recv(&mut self) -> Result<Option<Vec<RmqDelivery>>, RmqError> {
        tokio::select! {
            biased;
            _ = self.calls.closed() => Err(RmqError::Closed),
            batch = self.rx.recv() => batch.map(Some).ok_or(RmqError::Closed),
        }
    }

    async fn cancel(&mut self) {
        if let Some(consumer) = self.consumer.lock().await.as_ref() {
            consumer.suspend().await;
        }
    }

    fn closer(&self) -> Closer {
        let calls = self.calls.clone();
        let consumer = self.consumer.clone();
        let settler = self.settler.clone();
        Closer::new(move || {
            let (calls, consumer, settler) = (calls.clone(), consumer.clone(), settler.clone());
            async move {
                // Release blocked calls first: the client's shutdown waits for them.
                calls.close();
                if let Some(mut consumer) = consumer.lock().await.take() {
                    consumer.shutdown().await;
                }
                settler.producer.shutdown().await;
            }
        })
    }
}
