//! One RocketMQ client runtime, shared by the sources and producers built from it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rocketmq_client_rust::{ClientConfig, ClientRuntime, ClientRuntimeConfig};
use rocketmq_runtime::{RuntimeConfig, RuntimeOwner};

use crate::error::RmqError;

/// How many listener calls may block at once by default: each holds a thread of the
/// client's blocking lane while its messages run on the async engine.
const LISTENER_THREADS: usize = 64;

/// A RocketMQ client: the name server address and the runtime the client crate runs its
/// connections, pulls and listener calls on. Cheap to clone.
///
/// `rocketmq-client-rust` calls listeners synchronously on its blocking lane, and its
/// default lane on a small machine admits a handful of calls with a short queue (a burst of
/// backlogged messages then has some calls rejected). This client sizes that lane for
/// listeners that wait on the async engine: [`listener_threads`](Client::listener_threads)
/// calls at once, a long queue, and no per-call deadline shorter than the consume timeout.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    name_server: String,
    runtime: Arc<ClientRuntime>,
    owner: Mutex<Option<RuntimeOwner>>,
}

impl Drop for Inner {
    /// The owner holds a Tokio runtime, which must not be dropped on an async thread:
    /// shut it down in the background instead.
    fn drop(&mut self) {
        if let Some(owner) = self.owner.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = owner.shutdown_background();
        }
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("name_server", &self.inner.name_server)
            .finish()
    }
}

impl Client {
    /// A client of the name server at `name_server` (`host:port`, or several separated by
    /// `;`), with room for 64 listener calls at once.
    pub fn new(name_server: impl Into<String>) -> Result<Self, RmqError> {
        Self::listener_threads(name_server, LISTENER_THREADS)
    }

    /// A client whose blocking lane admits `threads` listener calls at once.
    pub fn listener_threads(
        name_server: impl Into<String>,
        threads: usize,
    ) -> Result<Self, RmqError> {
        let threads = threads.clamp(4, 256);
        let parallelism = std::thread::available_parallelism().map_or(2, |n| n.get());
        let mut config = RuntimeConfig::for_parallelism("idemq-rocketmq", parallelism)
            .with_max_blocking_threads(threads * 2)
            .map_err(|e| RmqError::Runtime(e.to_string()))?;
        let lane = &mut config.blocking_lane_policies.metadata_io;
        lane.max_concurrency = threads;
        lane.max_queue_depth = threads * 16;
        lane.queue_timeout = Duration::from_secs(60);
        lane.task_timeout = Duration::from_secs(15 * 60);
        let owner = RuntimeOwner::plan(config)
            .map_err(|e| RmqError::Runtime(e.to_string()))?
            .build()
            .map_err(|e| RmqError::Runtime(e.to_string()))?;
        let runtime = ClientRuntime::try_new(
            owner.root_context().component("idemq"),
            ClientRuntimeConfig::default(),
            rocketmq_observability::TelemetryHandle::default(),
        )?;
        Ok(Self {
            inner: Arc::new(Inner {
                name_server: name_server.into(),
                runtime,
                owner: Mutex::new(Some(owner)),
            }),
        })
    }

    /// Shuts the client runtime down, after its consumers and producers were stopped. A
    /// client dropped without it stops in the background and logs what was still running.
    pub async fn shutdown(&self) {
        let _ = self.inner.runtime.shutdown().await;
        let owner = self
            .inner
            .owner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(owner) = owner {
            let _ = owner.shutdown_tasks().await;
            let _ = owner.shutdown_background();
        }
    }

    /// The name server address.
    pub fn name_server(&self) -> &str {
        &self.inner.name_server
    }

    /// The client crate's runtime, for building its consumers and producers directly.
    pub fn runtime(&self) -> Arc<ClientRuntime> {
        self.inner.runtime.clone()
    }

    /// A client configuration for one consumer or producer: the name server, an instance
    /// name of its own (two consumers of one group in one process must not share a client
    /// instance), and a heartbeat every 10 s (the least the client allows) instead of 30: `rocketmq-broker` 1.0.0 drops a
    /// consumer whose connection closed only once it has been silent for the broker's
    /// `channelExpiredTimeout`, so a short expiry needs frequent beats.
    pub(crate) fn config(&self, instance: &str) -> ClientConfig {
        ClientConfig {
            namesrv_addr: Some(self.inner.name_server.clone().into()),
            instance_name: instance.to_string().into(),
            vip_channel_enabled: false,
            heartbeat_broker_interval: 10_000,
            ..Default::default()
        }
    }
}
