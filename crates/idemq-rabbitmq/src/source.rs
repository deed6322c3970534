//! RabbitMQ as a source of the consumer runtime: a connection, a confirm channel and a
//! `basic.consume` on the work queue.

use std::sync::Arc;

use futures::{FutureExt, StreamExt};
use idemq_consumer::{Closer, Consumer, Session, Source};
use lapin::options::{
    BasicCancelOptions, BasicConsumeOptions, BasicQosOptions, ConfirmSelectOptions,
};
use lapin::types::FieldTable;
use lapin::Connection;

use crate::connect::connect;
use crate::delivery::{AmqpDelivery, Settler};
use crate::error::AmqpError;
use crate::topology::{short, Topology};

/// A RabbitMQ work queue, consumed by the idemq runtime ([`idemq_consumer::Consumer`]).
///
/// Each session connects, enables publisher confirms (retries and dead letters are
/// confirmed copies), sets the prefetch, declares the topology (unless turned off) and
/// consumes the work queue. Deliveries settle themselves as [`AmqpDelivery`] describes.
///
/// ```no_run
/// # use idemq_core::{Engine, EngineConfig, KeyStrategy, Scope, store::MemoryStore};
/// # use idemq_core::adapter::RetryPolicy;
/// # use idemq_rabbitmq::{AmqpDelivery, AmqpSource, Topology};
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let topology = Topology::new("orders", RetryPolicy::default())?;
/// let engine = Engine::new(
///     MemoryStore::new(),
///     EngineConfig::new(Scope::new("stock/orders")?),
///     KeyStrategy::MessageId,
/// );
/// let consumer = AmqpSource::new("amqp://127.0.0.1:5672/%2f", topology)
///     .prefetch(32)
///     .consumer()
///     .concurrency(8)
///     .spawn(idemq_consumer::run(engine, |d: &AmqpDelivery| {
///         let body = d.data().to_vec();
///         async move { Ok::<_, std::io::Error>(body.len().to_string()) }
///     }));
/// consumer.wait_for_session(1).await;
/// consumer.shutdown().await;
/// # Ok(()) }
/// ```
pub struct AmqpSource {
    uri: String,
    topology: Arc<Topology>,
    prefetch: u16,
    declare: bool,
    name: String,
}

impl AmqpSource {
    /// The work queue of `topology` on the broker at `uri` (`amqp://user:pass@host:port/vhost`).
    pub fn new(uri: impl Into<String>, topology: Topology) -> Self {
        let name = format!(
            "idemq-{}-{}",
            topology.queue(),
            uuid::Uuid::now_v7().simple()
        );
        Self {
            uri: uri.into(),
            topology: Arc::new(topology),
            prefetch: 32,
            declare: true,
            name,
        }
    }

    /// How many unacked deliveries the broker sends ahead (`basic.qos`, default 32).
    pub fn prefetch(mut self, n: u16) -> Self {
        self.prefetch = n.max(1);
        self
    }

    /// Whether each session declares the topology first (default true).
    pub fn declare_topology(mut self, on: bool) -> Self {
        self.declare = on;
        self
    }

    /// The connection name shown by RabbitMQ (`rabbitmqctl list_connections
    /// client_properties`), also the consumer tag.
    pub fn connection_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The connection name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The topology consumed.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// A runtime consumer of this queue, retrying with the topology's policy.
    pub fn consumer(self) -> Consumer<Self> {
        let policy = self.topology.policy().clone();
        let name = self.name.clone();
        Consumer::new(self, policy).name(name)
    }
}

impl Source for AmqpSource {
    type Delivery = AmqpDelivery;
    type Error = AmqpError;
    type Session = AmqpSession;

    async fn open(&self) -> Result<AmqpSession, AmqpError> {
        let conn = Arc::new(connect(&self.uri, &self.name).await?);
        let channel = conn.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        channel
            .basic_qos(self.prefetch, BasicQosOptions::default())
            .await?;
        if self.declare {
            self.topology.declare(&channel).await?;
        }
        let deliveries = channel
            .basic_consume(
                short(self.topology.queue())?,
                short(&self.name)?,
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let settler = Arc::new(Settler {
            channel,
            topology: self.topology.clone(),
        });
        Ok(AmqpSession {
            conn,
            settler,
            deliveries,
            tag: self.name.clone(),
            max: usize::from(self.prefetch),
            failed: None,
        })
    }
}

/// One connection's deliveries.
pub struct AmqpSession {
    conn: Arc<Connection>,
    settler: Arc<Settler>,
    deliveries: lapin::Consumer,
    tag: String,
    max: usize,
    failed: Option<AmqpError>,
}

impl Session for AmqpSession {
    type Delivery = AmqpDelivery;
    type Error = AmqpError;

    /// The next delivery, with those that arrived with it (up to the prefetch) so they can
    /// be claimed together. Cancel-safe: lapin's stream keeps what it has not handed out.
    async fn recv(&mut self) -> Result<Option<Vec<AmqpDelivery>>, AmqpError> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        let first = match self.deliveries.next().await {
            Some(d) => d?,
            None => return Err(AmqpError::Cancelled),
        };
        let mut out = vec![AmqpDelivery::new(first, self.settler.clone())];
        while out.len() < self.max {
            match self.deliveries.next().now_or_never() {
                Some(Some(Ok(d))) => out.push(AmqpDelivery::new(d, self.settler.clone())),
                // Hand out what arrived first; the failure ends the session on the next call.
                Some(Some(Err(e))) => {
                    self.failed = Some(e.into());
                    break;
                }
                Some(None) => {
                    self.failed = Some(AmqpError::Cancelled);
                    break;
                }
                None => break,
            }
        }
        Ok(Some(out))
    }

    async fn cancel(&mut self) {
        if let Ok(tag) = short(&self.tag) {
            let _ = self
                .settler
                .channel
                .basic_cancel(tag, BasicCancelOptions::default())
                .await;
        }
    }

    fn closer(&self) -> Closer {
        let conn = self.conn.clone();
        Closer::new(move || {
            let conn = conn.clone();
            async move {
                let _ = conn.close(200, "idemq consumer closed".into()).await;
            }
        })
    }
}
