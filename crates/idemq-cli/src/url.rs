//! Choosing stores, business databases and brokers by URL.
//!
//! Every choice the demo makes is one URL, so a run is described by the URLs it prints.
//! Passwords never leave this module: [`redact`] hides them before a URL is shown.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use idemq_core::store::{MemoryStore, StoreError};
use idemq_core::Store;
use idemq_mysql::MySqlStore;
use idemq_postgres::PgStore;
use idemq_redis::RedisStore;
use idemq_sqlite::SqliteStore;
use idemq_tiered::TieredStore;

/// Why a URL was refused or its target could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    /// The URL has no scheme this command knows.
    #[error("unsupported {what} URL {url:?}: expected one of {expected}")]
    Unsupported {
        /// Store, database or broker.
        what: &'static str,
        /// The URL, redacted.
        url: String,
        /// The forms accepted.
        expected: &'static str,
    },
    /// The scheme is known but this build has no backend for it yet.
    #[error("{what} {url} is not available yet: {why}")]
    NotYet {
        /// Store or broker.
        what: &'static str,
        /// The URL, redacted.
        url: String,
        /// What is missing.
        why: &'static str,
    },
    /// The backend refused to open.
    #[error("cannot open {what} {url}: {source}")]
    Open {
        /// Store or database.
        what: &'static str,
        /// The URL, redacted.
        url: String,
        /// The backend's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// The URL forms of `--store`, for help texts.
pub const STORE_FORMS: &str =
    "memory:// | sqlite://FILE | redis://HOST:PORT | redis-cluster://HOST:PORT[,HOST:PORT...] \
     | mysql://USER@HOST/DB | postgres://USER@HOST/DB | same \
     | tiered+redis://HOST:PORT?durable=(URL|same)";
/// The URL forms of `--db`, for help texts.
pub const DB_FORMS: &str =
    "sqlite://FILE | mysql://USER@HOST:PORT/DB | postgres://USER@HOST:PORT/DB";
/// The URL forms of `--broker`, for help texts.
pub const BROKER_FORMS: &str =
    "memory:// | amqp://HOST:PORT | kafka://HOST:PORT | rocketmq://HOST:PORT | nats://HOST:PORT";

/// Where the idempotency records live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// `memory://`: in this process only; forgotten when it exits.
    Memory,
    /// `sqlite://FILE`: an embedded store in one file.
    Sqlite(PathBuf),
    /// `redis://HOST:PORT` (or `rediss://`): one Redis node.
    Redis(String),
    /// `redis-cluster://HOST:PORT[,HOST:PORT...]`: a Redis Cluster, reached through any of
    /// the nodes listed.
    RedisCluster(Vec<String>),
    /// `mysql://...` or `mariadb://...`.
    Mysql(String),
    /// `postgres://...` or `postgresql://...`.
    Postgres(String),
    /// `same`: the records live in the business database itself, written in the handler's
    /// own transaction.
    Same,
    /// `tiered+redis://HOST:PORT?durable=URL`: Redis in front of a durable SQL store, which
    /// may be the business database (`durable=same`).
    Tiered {
        /// The cache tier: [`StoreUrl::Redis`] or [`StoreUrl::RedisCluster`].
        cache: Box<StoreUrl>,
        /// The durable tier: an SQL store URL or [`StoreUrl::Same`].
        durable: Box<StoreUrl>,
    },
}

impl FromStr for StoreUrl {
    type Err = UrlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let unsupported = || UrlError::Unsupported {
            what: "store",
            url: redact(s),
            expected: STORE_FORMS,
        };
        if s == "same" {
            return Ok(Self::Same);
        }
        if let Some(tiered) = s.strip_prefix("tiered+") {
            return Self::tiered(tiered).ok_or_else(unsupported);
        }
        let (scheme, rest) = s.split_once("://").ok_or_else(unsupported)?;
        match scheme {
            "memory" if rest.is_empty() => Ok(Self::Memory),
            "sqlite" => sqlite_path(rest).map(Self::Sqlite).ok_or_else(unsupported),
            "redis" | "rediss" if !rest.is_empty() => Ok(Self::Redis(s.to_owned())),
            "redis-cluster" if !rest.is_empty() => Ok(Self::RedisCluster(
                rest.split(',')
                    .map(|node| format!("redis://{node}"))
                    .collect(),
            )),
            "mysql" | "mariadb" if !rest.is_empty() => Ok(Self::Mysql(s.to_owned())),
            "postgres" | "postgresql" if !rest.is_empty() => Ok(Self::Postgres(s.to_owned())),
            _ => Err(unsupported()),
        }
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Memory => f.write_str("memory://"),
            Self::Sqlite(p) => write!(f, "sqlite://{}", p.display()),
            Self::Redis(u) | Self::Mysql(u) | Self::Postgres(u) => f.write_str(&redact(u)),
            Self::RedisCluster(nodes) => {
                let nodes: Vec<String> = nodes
                    .iter()
                    .map(|n| redact(n).trim_start_matches("redis://").to_owned())
                    .collect();
                write!(f, "redis-cluster://{}", nodes.join(","))
            }
            Self::Same => f.write_str("same"),
            Self::Tiered { cache, durable } => write!(f, "tiered+{cache}?durable={durable}"),
        }
    }
}

impl StoreUrl {
    /// The default store: for an SQLite business database, an SQLite file next to it, so the
    /// demo needs no server and several `consume` processes share one store; for a MySQL or
    /// PostgreSQL one, the business database itself ([`StoreUrl::Same`]).
    pub fn next_to(db: &DbUrl) -> Self {
        let Some(path) = db.path() else {
            return Self::Same;
        };
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "idemq-demo".into());
        Self::Sqlite(path.with_file_name(format!("{stem}.store.db")))
    }

    /// `redis://HOST:PORT?durable=URL` (after `tiered+`). The durable URL is everything after
    /// `durable=`, so it may carry its own query string.
    fn tiered(s: &str) -> Option<Self> {
        let (cache, durable) = s.split_once("?durable=")?;
        let cache: StoreUrl = cache.parse().ok()?;
        let durable: StoreUrl = durable.parse().ok()?;
        let cache_ok = matches!(cache, Self::Redis(_) | Self::RedisCluster(_));
        let durable_ok = matches!(
            durable,
            Self::Same | Self::Sqlite(_) | Self::Mysql(_) | Self::Postgres(_)
        );
        (cache_ok && durable_ok).then(|| Self::Tiered {
            cache: Box::new(cache),
            durable: Box::new(durable),
        })
    }

    /// Whether the records are written in the business transaction: `same`, or a tiered
    /// store whose durable tier is `same`.
    pub fn in_business_tx(&self) -> bool {
        match self {
            Self::Same => true,
            Self::Tiered { durable, .. } => **durable == Self::Same,
            _ => false,
        }
    }

    /// Opens a store apart from the business database, for the engine's claim/complete
    /// around the handler. `same` (and `durable=same`) are opened on the business pool
    /// instead, by [`crate::demo::dedup`].
    pub async fn open(&self) -> Result<Arc<dyn Store>, UrlError> {
        match self {
            Self::Memory => Ok(Arc::new(MemoryStore::new())),
            Self::Sqlite(path) => {
                let url = format!("sqlite://{}", path.display());
                self.opened(SqliteStore::connect(&url).await)
            }
            Self::Same => Err(UrlError::NotYet {
                what: "store",
                url: self.to_string(),
                why: "`same` lives in the business transaction and is opened on its pool",
            }),
            Self::Tiered { cache, durable } => {
                let durable = Box::pin(durable.open()).await?;
                let cache = cache.open_redis().await?;
                Ok(Arc::new(TieredStore::new(cache, durable)))
            }
            Self::Redis(url) => self.opened(RedisStore::connect(url).await),
            Self::RedisCluster(nodes) => self.opened(RedisStore::connect_cluster(nodes).await),
            Self::Postgres(url) => self.opened(PgStore::connect(url).await),
            Self::Mysql(url) => self.opened(MySqlStore::connect(&mysql_url(url)).await),
        }
    }

    /// Opens a Redis URL as a [`RedisStore`], for the cache tier of a tiered store.
    pub async fn open_redis(&self) -> Result<RedisStore, UrlError> {
        let opened = match self {
            Self::Redis(url) => RedisStore::connect(url).await,
            Self::RedisCluster(nodes) => RedisStore::connect_cluster(nodes).await,
            _ => {
                return Err(UrlError::Unsupported {
                    what: "cache tier",
                    url: self.to_string(),
                    expected: "redis://HOST:PORT | redis-cluster://HOST:PORT[,HOST:PORT...]",
                })
            }
        };
        opened.map_err(|e| UrlError::Open {
            what: "store",
            url: self.to_string(),
            source: Box::new(e),
        })
    }

    fn opened<S: Store>(&self, r: Result<S, StoreError>) -> Result<Arc<dyn Store>, UrlError> {
        match r {
            Ok(store) => Ok(Arc::new(store)),
            Err(e) => Err(UrlError::Open {
                what: "store",
                url: self.to_string(),
                source: Box::new(e),
            }),
        }
    }
}

/// The business database the demo's handler writes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbUrl {
    /// `sqlite://FILE`.
    Sqlite(PathBuf),
    /// `mysql://...` or `mariadb://...` (kept as given; see [`DbUrl::connect_url`]).
    Mysql(String),
    /// `postgres://...` or `postgresql://...`.
    Postgres(String),
}

impl DbUrl {
    /// The default: `idemq-demo.db` in the system's temporary directory, so runs from any
    /// working directory meet the same file and nothing is left in a checkout.
    pub fn default_file() -> Self {
        Self::Sqlite(std::env::temp_dir().join("idemq-demo.db"))
    }

    /// The file of an SQLite database; `None` for a server.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Self::Sqlite(p) => Some(p),
            Self::Mysql(_) | Self::Postgres(_) => None,
        }
    }

    /// The URL the driver connects to: `mariadb://` becomes `mysql://`, the rest as given.
    pub fn connect_url(&self) -> String {
        match self {
            Self::Sqlite(p) => format!("sqlite://{}", p.display()),
            Self::Mysql(url) => mysql_url(url),
            Self::Postgres(url) => url.clone(),
        }
    }
}

impl FromStr for DbUrl {
    type Err = UrlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let unsupported = || UrlError::Unsupported {
            what: "database",
            url: redact(s),
            expected: DB_FORMS,
        };
        let (scheme, rest) = s.split_once("://").ok_or_else(unsupported)?;
        match scheme {
            "sqlite" => sqlite_path(rest).map(Self::Sqlite).ok_or_else(unsupported),
            "mysql" | "mariadb" if !rest.is_empty() => Ok(Self::Mysql(s.to_owned())),
            "postgres" | "postgresql" if !rest.is_empty() => Ok(Self::Postgres(s.to_owned())),
            _ => Err(unsupported()),
        }
    }
}

impl fmt::Display for DbUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(p) => write!(f, "sqlite://{}", p.display()),
            Self::Mysql(u) | Self::Postgres(u) => f.write_str(&redact(u)),
        }
    }
}

/// sqlx knows MariaDB as `mysql://`.
fn mysql_url(url: &str) -> String {
    match url.strip_prefix("mariadb://") {
        Some(rest) => format!("mysql://{rest}"),
        None => url.to_owned(),
    }
}

/// The broker the orders travel through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerUrl {
    /// `memory://`: the in-process at-least-once broker of `demo run`.
    Memory,
    /// `amqp://` or `amqps://`: RabbitMQ.
    Amqp(String),
    /// `kafka://`.
    Kafka(String),
    /// `rocketmq://`.
    RocketMq(String),
    /// `nats://`: NATS JetStream.
    Nats(String),
}

impl FromStr for BrokerUrl {
    type Err = UrlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let unsupported = || UrlError::Unsupported {
            what: "broker",
            url: redact(s),
            expected: BROKER_FORMS,
        };
        let (scheme, rest) = s.split_once("://").ok_or_else(unsupported)?;
        let url = s.to_owned();
        match scheme {
            "memory" if rest.is_empty() => Ok(Self::Memory),
            _ if rest.is_empty() => Err(unsupported()),
            "amqp" | "amqps" => Ok(Self::Amqp(url)),
            "kafka" => Ok(Self::Kafka(url)),
            "rocketmq" => Ok(Self::RocketMq(url)),
            "nats" => Ok(Self::Nats(url)),
            _ => Err(unsupported()),
        }
    }
}

impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Memory => f.write_str("memory://"),
            Self::Amqp(u) | Self::Kafka(u) | Self::RocketMq(u) | Self::Nats(u) => {
                f.write_str(&redact(u))
            }
        }
    }
}

/// `sqlite://FILE` takes the rest as a path: `sqlite://demo.db` is relative,
/// `sqlite:///tmp/demo.db` absolute. Query strings are not accepted.
fn sqlite_path(rest: &str) -> Option<PathBuf> {
    (!rest.is_empty() && !rest.contains('?')).then(|| PathBuf::from(rest))
}

/// The URL with any password replaced by `***`, for printing and logs.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    match rest[..at].split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***{}", &rest[at..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls_parse_by_scheme() {
        assert_eq!("memory://".parse::<StoreUrl>().unwrap(), StoreUrl::Memory);
        assert_eq!(
            "sqlite:///tmp/s.db".parse::<StoreUrl>().unwrap(),
            StoreUrl::Sqlite("/tmp/s.db".into())
        );
        assert_eq!("same".parse::<StoreUrl>().unwrap(), StoreUrl::Same);
        assert!(matches!(
            "redis://127.0.0.1:6379".parse::<StoreUrl>().unwrap(),
            StoreUrl::Redis(_)
        ));
        let cluster: StoreUrl = "redis-cluster://127.0.0.1:17000,127.0.0.1:17001"
            .parse()
            .unwrap();
        assert_eq!(
            cluster,
            StoreUrl::RedisCluster(vec![
                "redis://127.0.0.1:17000".into(),
                "redis://127.0.0.1:17001".into()
            ])
        );
        assert_eq!(
            cluster.to_string(),
            "redis-cluster://127.0.0.1:17000,127.0.0.1:17001"
        );
        for bad in [
            "",
            "memory://x",
            "sqlite://",
            "ftp://x",
            "redis://",
            "/tmp/x.db",
        ] {
            assert!(bad.parse::<StoreUrl>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn tiered_urls_name_a_redis_cache_and_a_durable_store() {
        let url =
            "tiered+redis://127.0.0.1:6379?durable=postgres://app:pw@db:5432/test?sslmode=disable";
        let parsed: StoreUrl = url.parse().unwrap();
        assert_eq!(
            parsed,
            StoreUrl::Tiered {
                cache: Box::new(StoreUrl::Redis("redis://127.0.0.1:6379".into())),
                durable: Box::new(StoreUrl::Postgres(
                    "postgres://app:pw@db:5432/test?sslmode=disable".into()
                )),
            }
        );
        assert!(!parsed.in_business_tx());
        assert_eq!(
            parsed.to_string(),
            "tiered+redis://127.0.0.1:6379?durable=postgres://app:***@db:5432/test?sslmode=disable"
        );
        let same: StoreUrl = "tiered+redis://127.0.0.1:6379?durable=same"
            .parse()
            .unwrap();
        assert!(same.in_business_tx());
        assert!(StoreUrl::Same.in_business_tx());
        for bad in [
            "tiered+redis://127.0.0.1:6379",
            "tiered+memory://?durable=same",
            "tiered+redis://h:1?durable=memory://",
            "tiered+redis://h:1?durable=redis://h:2",
            "tiered+postgres://db/test?durable=same",
        ] {
            assert!(bad.parse::<StoreUrl>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn db_urls_parse_by_scheme() {
        assert_eq!(
            "sqlite:///tmp/shop.db".parse::<DbUrl>().unwrap(),
            DbUrl::Sqlite("/tmp/shop.db".into())
        );
        let maria: DbUrl = "mariadb://root@127.0.0.1:3306/test".parse().unwrap();
        assert_eq!(maria.connect_url(), "mysql://root@127.0.0.1:3306/test");
        assert_eq!(maria.path(), None);
        let pg: DbUrl = "postgres://app:pw@127.0.0.1:5432/test".parse().unwrap();
        assert_eq!(pg.to_string(), "postgres://app:***@127.0.0.1:5432/test");
        for bad in ["", "mysql://", "redis://h:1", "same", "/tmp/x.db"] {
            assert!(bad.parse::<DbUrl>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_default_store_sits_next_to_the_db() {
        let db: DbUrl = "sqlite:///var/tmp/shop.db".parse().unwrap();
        assert_eq!(
            StoreUrl::next_to(&db),
            StoreUrl::Sqlite("/var/tmp/shop.store.db".into())
        );
        let server: DbUrl = "postgres://postgres@127.0.0.1/test".parse().unwrap();
        assert_eq!(StoreUrl::next_to(&server), StoreUrl::Same);
    }

    #[test]
    fn broker_urls_parse_by_scheme() {
        assert_eq!("memory://".parse::<BrokerUrl>().unwrap(), BrokerUrl::Memory);
        assert!(matches!(
            "amqp://guest:guest@127.0.0.1:5672"
                .parse::<BrokerUrl>()
                .unwrap(),
            BrokerUrl::Amqp(_)
        ));
        assert!("amqp://".parse::<BrokerUrl>().is_err());
        assert!("sqs://q".parse::<BrokerUrl>().is_err());
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/test"),
            "postgres://app:***@db:5432/test"
        );
        assert_eq!(redact("amqp://guest@mq/vhost@x"), "amqp://guest@mq/vhost@x");
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        let shown = "mysql://root:pw@h/db"
            .parse::<StoreUrl>()
            .unwrap()
            .to_string();
        assert!(!shown.contains("pw"), "{shown}");
    }
}
