//! Shared test helpers: the name server, a shared client, fresh topics and groups, and
//! watching a dead-letter topic.
#![allow(dead_code)]

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use idemq_rocketmq::rocketmq_client_rust::{
    ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus, DefaultMQPushConsumer, MQPushConsumer,
};
use idemq_rocketmq::rocketmq_model::common::consumer::consume_from_where::ConsumeFromWhere;
use idemq_rocketmq::rocketmq_model::common::message::message_ext::MessageExt;
use idemq_rocketmq::{Client, Producer};
use tokio::sync::{mpsc, Mutex};

/// The name server under test: `IDEMQ_ROCKETMQ_NAMESRV`, else the local one
/// (`scripts/rocketmq start`).
pub fn name_server() -> String {
    std::env::var("IDEMQ_ROCKETMQ_NAMESRV").unwrap_or_else(|_| "127.0.0.1:9876".into())
}

/// One client for the whole test binary: it owns its runtime, so tests on their own Tokio
/// runtimes share it safely.
pub fn client() -> Client {
    static CLIENT: OnceLock<Client> = OnceLock::new();
    CLIENT
        .get_or_init(|| Client::new(name_server()).expect("rocketmq client"))
        .clone()
}

/// Fails clearly when the name server does not answer. Also turns on logs for `RUST_LOG`.
pub async fn require_broker() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let addr = name_server();
    if tokio::net::TcpStream::connect(&addr).await.is_err() {
        panic!("RocketMQ must be running for these tests (scripts/rocketmq start; or set IDEMQ_ROCKETMQ_NAMESRV): nothing answers on {addr}");
    }
}

/// A name no other test uses.
pub fn fresh(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}-{}", &id[..12])
}

/// A started producer, shared by the test binary.
pub async fn producer() -> Arc<Producer> {
    static PRODUCER: tokio::sync::OnceCell<Arc<Producer>> = tokio::sync::OnceCell::const_new();
    require_broker().await;
    PRODUCER
        .get_or_init(|| async {
            Arc::new(
                Producer::start(&client(), "idemq-tests")
                    .await
                    .expect("producer"),
            )
        })
        .await
        .clone()
}

/// Every message arriving on a topic, through a push consumer of its own group.
pub struct Watch {
    rx: Mutex<mpsc::UnboundedReceiver<MessageExt>>,
    consumer: Mutex<DefaultMQPushConsumer>,
}

impl Watch {
    /// Watches `topic` (created first, so the consumer finds its route at once).
    pub async fn start(topic: &str) -> Self {
        Self::start_in(topic, &fresh("watch")).await
    }

    /// Watches `topic` as consumer group `group`.
    pub async fn start_in(topic: &str, group: &str) -> Self {
        producer().await.create_topic(topic, 1).await.unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let mut consumer = DefaultMQPushConsumer::builder(client().runtime())
            .name_server_addr(name_server())
            .consumer_group(group.to_string())
            .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
            .build();
        consumer.subscribe(topic, "*").await.unwrap();
        consumer.register_message_listener_concurrently(
            move |msgs: &[&MessageExt], _: &ConsumeConcurrentlyContext| {
                for m in msgs {
                    let _ = tx.send((*m).clone());
                }
                Ok(ConsumeConcurrentlyStatus::ConsumeSuccess)
            },
        );
        consumer.start().await.unwrap();
        Self {
            rx: Mutex::new(rx),
            consumer: Mutex::new(consumer),
        }
    }

    /// The next message; panics after `secs` seconds.
    pub async fn next(&self, secs: u64) -> MessageExt {
        let mut rx = self.rx.lock().await;
        tokio::time::timeout(Duration::from_secs(secs), rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no message within {secs} s"))
            .expect("watch ended")
    }

    /// Stops the watching consumer.
    pub async fn stop(&self) {
        self.consumer.lock().await.shutdown().await;
    }
}

/// Awaits `fut`; panics after `secs` seconds.
pub async fn within<T>(secs: u64, what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// A TCP proxy to a store's server that can be cut, as a store outage is: while down it
/// drops every open connection and refuses new ones.
pub struct Outage {
    /// The local port clients connect to.
    pub port: u16,
    up: tokio::sync::watch::Sender<bool>,
}

impl Outage {
    /// A proxy to `target` (`host:port`), up.
    pub async fn start(target: &'static str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (up, watch) = tokio::sync::watch::channel(true);
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut watch = watch.clone();
                if !*watch.borrow() {
                    continue;
                }
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = watch.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Self { port, up }
    }

    /// Cuts the server off.
    pub fn down(&self) {
        self.up.send_replace(false);
    }

    /// Lets clients reach the server again.
    pub fn up(&self) {
        self.up.send_replace(true);
    }
}
