//! `idemq demo`: the reduce-stock story on an at-least-once broker.
//!
//! N orders each publish one "reduce stock" message keyed by the order id. The broker
//! delivers them at least once — duplicated, delayed, redelivered after lost acks — and the
//! handler fails or crashes part of the time. Each message goes through
//! [`idemq_core::adapter::process`], and [`check`] then proves from the business database
//! alone that every order reduced stock exactly once.
//!
//! - [`story`]: the orders and the faults. [`db`]: the business schema and the handler's
//!   writes, on SQLite, MySQL/MariaDB or PostgreSQL. [`dedup`]: where the idempotency
//!   record lives — a store of its own, or the business transaction (`--store same`).
//! - [`broker`]: the [`Broker`](broker::Broker) trait and the in-memory broker.
//! - [`produce`] and [`consume`]: the two sides, shared by `demo run` and the split commands.
//! - [`transactional`]: `demo produce --transactional`, orders created by the local
//!   transactions of RocketMQ half messages.
//! - [`run`]: everything in one process. [`check`]: the verdict. [`report`]: the tables.

pub mod broker;
pub mod chance;
pub mod check;
pub mod consume;
pub mod db;
pub mod dedup;
pub mod produce;
pub mod report;
pub mod run;
pub mod story;
pub mod transactional;

use std::fmt;
use std::time::Duration;

use idemq_core::adapter::RetryPolicy;
use idemq_core::{EngineConfig, KeyError, Scope};

use crate::url::{BrokerUrl, DbUrl, StoreUrl, UrlError};

/// Why a demo command could not run (as opposed to a run that found violations).
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A URL was refused or could not be opened.
    #[error(transparent)]
    Url(#[from] UrlError),
    /// The business database failed.
    #[error("business database: {0}")]
    Db(#[from] sqlx::Error),
    /// The broker failed.
    #[error(transparent)]
    Broker(#[from] broker::BrokerError),
    /// A topic name or scope was invalid.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A flag was out of range.
    #[error("{0}")]
    Usage(String),
    /// The split commands need a broker between processes.
    #[error(
        "`demo {command}` needs a real broker between processes; memory:// lives inside one \
         process (use `demo run`, or --broker amqp://HOST:PORT, kafka://, rocketmq://, nats://)"
    )]
    NeedsRealBroker {
        /// `produce` or `consume`.
        command: &'static str,
    },
    /// `check` found nothing to check.
    #[error("topic {0:?} has no orders in the business database: nothing to check")]
    NoOrders(String),
}

/// A topic name: it names the run's queue, its idempotency scope and its rows, so a fresh
/// name is a fresh run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic(String);

impl Topic {
    /// Validates a topic: 1 to 64 characters of `A-Z a-z 0-9 . _ -`.
    pub fn new(name: impl Into<String>) -> Result<Self, DemoError> {
        let name = name.into();
        let ok = (1..=64).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if ok {
            Ok(Self(name))
        } else {
            Err(DemoError::Usage(format!(
                "invalid topic {name:?}: use 1 to 64 characters of A-Z a-z 0-9 . _ -"
            )))
        }
    }

    /// A topic no earlier run used: `run-` and the current Unix time in milliseconds.
    pub fn fresh() -> Self {
        Self(format!("run-{}", idemq_core::time::now_ms()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The idempotency scope of the story's consumer on this topic.
    pub fn scope(&self) -> Result<Scope, KeyError> {
        Scope::for_consumer("stock-service", &self.0)
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Everything a demo command was asked to do.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    /// How many orders.
    pub orders: u32,
    /// Extra copies published, as a fraction of the orders.
    pub duplicates: f64,
    /// Handler runs that fail (three in four) or crash (one in four).
    pub failures: f64,
    /// Acks the in-memory broker loses.
    pub lost_acks: f64,
    /// The idempotency store.
    pub store: StoreUrl,
    /// The business database.
    pub db: DbUrl,
    /// The broker.
    pub broker: BrokerUrl,
    /// The topic.
    pub topic: Topic,
    /// Concurrent consumer tasks.
    pub consumers: usize,
    /// The seed of the fault injection.
    pub seed: u64,
    /// Draw a progress bar (only sensible when stderr is a terminal).
    pub progress: bool,
    /// Timings of leases, retries and redelivery.
    pub timing: Timing,
}

impl DemoConfig {
    /// A configuration with the demo's defaults on `db`: sqlite store beside it, memory broker.
    pub fn new(orders: u32, db: DbUrl, topic: Topic) -> Self {
        Self {
            orders,
            duplicates: 0.3,
            failures: 0.2,
            lost_acks: 0.05,
            store: StoreUrl::next_to(&db),
            db,
            broker: BrokerUrl::Memory,
            topic,
            consumers: 4,
            seed: 1,
            progress: false,
            timing: Timing::default(),
        }
    }

    /// Checks the fractions and counts.
    pub fn validate(&self) -> Result<(), DemoError> {
        for (name, v) in [
            ("--duplicates", self.duplicates),
            ("--lost-acks", self.lost_acks),
        ] {
            if !(0.0..=10.0).contains(&v) {
                return Err(DemoError::Usage(format!("{name} must be within 0..=10")));
            }
        }
        if self.lost_acks > 0.9 {
            return Err(DemoError::Usage("--lost-acks must be at most 0.9".into()));
        }
        if !(0.0..=0.9).contains(&self.failures) {
            return Err(DemoError::Usage("--failures must be within 0..=0.9".into()));
        }
        if self.consumers == 0 {
            return Err(DemoError::Usage("--consumers must be at least 1".into()));
        }
        Ok(())
    }

    /// The engine configuration of the story's consumer.
    pub fn engine_config(&self) -> Result<EngineConfig, DemoError> {
        Ok(EngineConfig::new(self.topic.scope()?).lease(self.timing.lease))
    }
}

/// The short clocks of the demo, so crashes and retries resolve in well under a second
/// (production defaults are 60 s leases and 3 s first retries).
#[derive(Debug, Clone)]
pub struct Timing {
    /// The claim lease: a crashed consumer's claim is taken over after it.
    pub lease: Duration,
    /// How long a delivered message stays invisible before the broker redelivers it
    /// when it was neither acked nor settled (a crash, a lost ack).
    pub visibility: Duration,
    /// The retry policy for failed handlers.
    pub retry: RetryPolicy,
    /// The longest extra delay given to some duplicates.
    pub max_duplicate_delay: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            lease: Duration::from_millis(300),
            visibility: Duration::from_millis(400),
            retry: RetryPolicy {
                max_attempts: 6,
                initial_interval: Duration::from_millis(20),
                multiplier: 2.0,
                max_interval: Duration::from_millis(500),
                redeliver_after: Duration::from_millis(50),
            },
            max_duplicate_delay: Duration::from_millis(500),
        }
    }
}
