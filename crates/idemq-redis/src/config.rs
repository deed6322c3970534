//! The store's configuration and how it connects.

use std::sync::Arc;
use std::time::Duration;

use idemq_core::StoreError;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use tokio::sync::OnceCell;

use crate::conn::{store_error, Conn, LazyCluster};
use crate::keys::{valid_prefix, HashTag, Layout};
use crate::store::RedisStore;

/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "idemq";
/// The default largest result the store accepts, in bytes (1 MiB).
pub const DEFAULT_MAX_RESULT_BYTES: usize = 1024 * 1024;

/// Configures and connects a [`RedisStore`].
///
/// ```no_run
/// use std::time::Duration;
/// use idemq_redis::{HashTag, RedisStore};
///
/// # async fn f() -> Result<(), idemq_core::StoreError> {
/// let store = RedisStore::builder()
///     .prefix("billing")
///     .hash_tag(HashTag::Key)
///     .max_result_bytes(256 * 1024)
///     .response_timeout(Duration::from_secs(2))
///     .connect_cluster(&["redis://10.0.0.1:6379", "redis://10.0.0.2:6379"])
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RedisStoreBuilder {
    prefix: String,
    hash_tag: HashTag,
    max_result_bytes: usize,
    connection_timeout: Duration,
    response_timeout: Duration,
    reconnect_retries: usize,
}

impl Default for RedisStoreBuilder {
    fn default() -> Self {
        Self {
            prefix: DEFAULT_PREFIX.to_owned(),
            hash_tag: HashTag::Scope,
            max_result_bytes: DEFAULT_MAX_RESULT_BYTES,
            connection_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(5),
            reconnect_retries: 1,
        }
    }
}

impl RedisStoreBuilder {
    /// The defaults: prefix `idemq`, [`HashTag::Scope`], results up to 1 MiB, a 2 s connection
    /// timeout, a 5 s response timeout and one reconnection retry per call.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the prefix of every key; it must match `^[A-Za-z0-9_.:-]{1,64}$` (checked when
    /// connecting, as [`StoreError::Config`]).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Chooses which part of a key is its cluster hash tag.
    pub fn hash_tag(mut self, tag: HashTag) -> Self {
        self.hash_tag = tag;
        self
    }

    /// Sets the largest result `complete` stores; larger ones are refused with
    /// [`StoreError::ResultTooLarge`].
    pub fn max_result_bytes(mut self, max: usize) -> Self {
        self.max_result_bytes = max;
        self
    }

    /// Bounds each attempt to open a connection.
    pub fn connection_timeout(mut self, timeout: Duration) -> Self {
        self.connection_timeout = timeout;
        self
    }

    /// Bounds the wait for each answer; past it the call fails as
    /// [`StoreError::Unavailable`] (its effect, if any, is then undecided).
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// How many times a call reconnects to a single node before it fails; kept low so a
    /// store that is down answers [`StoreError::Unavailable`] promptly instead of stalling
    /// every consumer.
    pub fn reconnect_retries(mut self, retries: usize) -> Self {
        self.reconnect_retries = retries;
        self
    }

    fn layout(&self) -> Result<Layout, StoreError> {
        if !valid_prefix(&self.prefix) {
            return Err(StoreError::Config(format!(
                "invalid key prefix {:?}: use 1 to 64 characters of A-Z a-z 0-9 _ . : -",
                self.prefix.chars().take(64).collect::<String>()
            )));
        }
        Ok(Layout {
            prefix: self.prefix.clone(),
            tag: self.hash_tag,
        })
    }

    fn manager_config(&self) -> ConnectionManagerConfig {
        ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.connection_timeout))
            .set_response_timeout(Some(self.response_timeout))
            .set_number_of_retries(self.reconnect_retries)
    }

    fn store(&self, conn: Conn) -> Result<RedisStore, StoreError> {
        Ok(RedisStore::new(conn, self.layout()?, self.max_result_bytes))
    }

    /// Connects to one Redis node (`redis://[user:password@]host:port[/db]`), failing when it
    /// cannot be reached.
    pub async fn connect(self, url: &str) -> Result<RedisStore, StoreError> {
        self.layout()?;
        let client = redis::Client::open(url).map_err(config_error)?;
        let manager = ConnectionManager::new_with_config(client, self.manager_config())
            .await
            .map_err(store_error)?;
        self.store(Conn::Single(manager))
    }

    /// Like [`connect`](Self::connect), but connects on first use: building the store never
    /// fails for a server that is down. Must be called inside a Tokio runtime.
    pub fn connect_lazy(self, url: &str) -> Result<RedisStore, StoreError> {
        self.layout()?;
        let client = redis::Client::open(url).map_err(config_error)?;
        let manager = ConnectionManager::new_lazy_with_config(client, self.manager_config())
            .map_err(store_error)?;
        self.store(Conn::Single(manager))
    }

    /// Connects to a Redis Cluster through any of its nodes, failing when none answers.
    pub async fn connect_cluster<S: AsRef<str>>(
        self,
        urls: &[S],
    ) -> Result<RedisStore, StoreError> {
        let store = self.connect_cluster_lazy(urls)?;
        store.ensure_connected().await?;
        Ok(store)
    }

    /// Like [`connect_cluster`](Self::connect_cluster), but connects on first use.
    pub fn connect_cluster_lazy<S: AsRef<str>>(self, urls: &[S]) -> Result<RedisStore, StoreError> {
        self.layout()?;
        if urls.is_empty() {
            return Err(StoreError::Config("no cluster node given".into()));
        }
        let client = ClusterClientBuilder::new(urls.iter().map(|u| u.as_ref()))
            .connection_timeout(self.connection_timeout)
            .response_timeout(self.response_timeout)
            .overall_response_timeout(Some(self.response_timeout))
            .build()
            .map_err(config_error)?;
        let cluster = LazyCluster {
            client,
            conn: OnceCell::new(),
            slots: Default::default(),
            connect_timeout: self.connection_timeout + self.response_timeout,
        };
        self.store(Conn::Cluster(Arc::new(cluster)))
    }
}

/// A URL the client refuses; the message is the client's, which never echoes a password.
fn config_error(e: redis::RedisError) -> StoreError {
    StoreError::Config(format!("invalid Redis address: {e}"))
}
