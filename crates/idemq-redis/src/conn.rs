//! One connection type over a single Redis node or a Redis Cluster.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use idemq_core::StoreError;
use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisResult, Script, ServerErrorKind, Value};
use tokio::sync::OnceCell;

/// A cheap-to-clone handle on the server(s).
#[derive(Clone)]
pub(crate) enum Conn {
    /// One node behind a reconnecting multiplexed connection.
    Single(ConnectionManager),
    /// A cluster, connected on first use.
    Cluster(Arc<LazyCluster>),
}

/// A cluster connection made on first use, so a store can be built while the cluster is down.
pub(crate) struct LazyCluster {
    pub(crate) client: ClusterClient,
    pub(crate) conn: OnceCell<ClusterConnection>,
    /// Bounds the first connection, which otherwise retries for a long time.
    pub(crate) connect_timeout: Duration,
    /// Which master owns each slot, to pipeline the calls for one node together; dropped
    /// when a node answers MOVED or ASK.
    pub(crate) slots: Mutex<Option<Arc<SlotOwners>>>,
}

/// The owner (an index into `nodes`) of each of the 16384 slots.
pub(crate) struct SlotOwners {
    owner: Vec<u16>,
    nodes: Vec<(String, u16)>,
}

/// A node to SCAN.
pub(crate) enum Node {
    /// The only node of a single-node store.
    Single,
    /// The master owning a slot (given by a key on it).
    BySlot(String),
    /// A master by address.
    ByAddress(String, u16),
}

impl Conn {
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self, Conn::Cluster(_))
    }

    async fn cluster(c: &LazyCluster) -> RedisResult<ClusterConnection> {
        let conn = c
            .conn
            .get_or_try_init(|| async {
                match tokio::time::timeout(c.connect_timeout, c.client.get_async_connection()).await
                {
                    Ok(r) => r,
                    Err(_) => Err(RedisError::from(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "timed out connecting to the Redis Cluster",
                    ))),
                }
            })
            .await?;
        Ok(conn.clone())
    }

    /// Sends one command, routed by its first key in a cluster.
    pub(crate) async fn query(&self, cmd: &Cmd) -> RedisResult<Value> {
        match self {
            Conn::Single(m) => m.clone().req_packed_command(cmd).await?.extract_error(),
            Conn::Cluster(c) => Self::cluster(c)
                .await?
                .req_packed_command(cmd)
                .await?
                .extract_error(),
        }
    }

    /// Runs `cmd` (an `EVALSHA` of `script`), loading the script first when the server does
    /// not know it yet (a fresh or restarted server, a new cluster node).
    /// A few attempts, since a `SCRIPT FLUSH` may land between the load and the call.
    pub(crate) async fn eval(&self, script: &Script, cmd: &Cmd) -> RedisResult<Value> {
        let mut attempts = 0;
        loop {
            match self.query(cmd).await {
                Err(e) if is_noscript(&e) && attempts < 3 => {
                    attempts += 1;
                    self.load(script).await?;
                }
                other => return other,
            }
        }
    }

    /// Loads a script (on every node of a cluster).
    pub(crate) async fn load(&self, script: &Script) -> RedisResult<()> {
        match self {
            Conn::Single(m) => script.load_async(&mut m.clone()).await.map(drop),
            Conn::Cluster(c) => script
                .load_async(&mut Self::cluster(c).await?)
                .await
                .map(drop),
        }
    }

    /// Sends a pipeline in one write and reads every answer, server errors included as
    /// [`Value::ServerError`]. In a cluster every command must be on one slot.
    pub(crate) async fn pipeline(&self, pipe: &Pipeline, count: usize) -> RedisResult<Vec<Value>> {
        match self {
            Conn::Single(m) => m.clone().req_packed_commands(pipe, 0, count).await,
            Conn::Cluster(c) => {
                Self::cluster(c)
                    .await?
                    .req_packed_commands(pipe, 0, count)
                    .await
            }
        }
    }

    /// The masters to SCAN for a scope: the one owning `slot_key` when given, else all.
    pub(crate) async fn scan_nodes(&self, slot_key: Option<String>) -> RedisResult<Vec<Node>> {
        let Conn::Cluster(c) = self else {
            return Ok(vec![Node::Single]);
        };
        if let Some(k) = slot_key {
            return Ok(vec![Node::BySlot(k)]);
        }
        let owners = Self::slot_owners(c).await?;
        Ok(owners
            .nodes
            .iter()
            .map(|(h, p)| Node::ByAddress(h.clone(), *p))
            .collect())
    }

    async fn slot_owners(c: &LazyCluster) -> RedisResult<Arc<SlotOwners>> {
        if let Some(o) = c.slots.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            return Ok(o);
        }
        let slots = Self::cluster(c)
            .await?
            .route_command(
                redis::cmd("CLUSTER").arg("SLOTS").clone(),
                RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
            )
            .await?
            .extract_error()?;
        let mut owners = SlotOwners {
            owner: vec![u16::MAX; 16384],
            nodes: Vec::new(),
        };
        // Each entry: [start, end, [host, port, id, ..], replicas..]
        for range in as_array(slots)? {
            let mut f = as_array(range)?.into_iter();
            let (Some(Value::Int(start)), Some(Value::Int(end)), Some(master)) =
                (f.next(), f.next(), f.next())
            else {
                return Err(unexpected("CLUSTER SLOTS entry"));
            };
            let mut m = as_array(master)?.into_iter();
            let (Some(host), Some(Value::Int(port))) = (m.next(), m.next()) else {
                return Err(unexpected("CLUSTER SLOTS node"));
            };
            let host = match host {
                Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
                Value::SimpleString(s) => s,
                _ => return Err(unexpected("CLUSTER SLOTS host")),
            };
            let addr = (host, port as u16);
            let idx = match owners.nodes.iter().position(|n| *n == addr) {
                Some(i) => i,
                None => {
                    owners.nodes.push(addr);
                    owners.nodes.len() - 1
                }
            };
            let (start, end) = (start.clamp(0, 16383) as usize, end.clamp(0, 16383) as usize);
            for o in &mut owners.owner[start..=end] {
                *o = idx as u16;
            }
        }
        let owners = Arc::new(owners);
        *c.slots.lock().unwrap_or_else(|e| e.into_inner()) = Some(owners.clone());
        Ok(owners)
    }

    /// Runs many commands, each on keys of one slot (`script` is what they evaluate, if
    /// anything), and answers one value per command, in order.
    ///
    /// The commands for one node go in one pipeline (all of them on a single node), the
    /// pipelines concurrently. A command the server refused without running it (an unknown
    /// script, a slot that moved, a cluster in transition) is sent again on its own, which
    /// loads the script or follows the redirection.
    pub(crate) async fn run_many(
        &self,
        script: Option<&Script>,
        cmds: Vec<(u16, Cmd)>,
    ) -> RedisResult<Vec<Value>> {
        if cmds.is_empty() {
            return Ok(Vec::new());
        }
        if cmds.len() == 1 {
            return self.run_one(script, &cmds[0].1).await.map(|v| vec![v]);
        }
        let batches: Vec<(Option<u16>, Vec<usize>)> = match self {
            Conn::Single(_) => vec![(None, (0..cmds.len()).collect())],
            Conn::Cluster(c) => {
                let owners = Self::slot_owners(c).await?;
                let mut by_node: HashMap<u16, (Option<u16>, Vec<usize>)> = HashMap::new();
                for (i, (slot, _)) in cmds.iter().enumerate() {
                    let node = owners.owner[*slot as usize];
                    by_node
                        .entry(node)
                        .or_insert((Some(*slot), Vec::new()))
                        .1
                        .push(i);
                }
                by_node.into_values().collect()
            }
        };
        let cmds = &cmds;
        let answers = futures::future::try_join_all(batches.iter().map(|(slot, idx)| {
            let mut pipe = redis::pipe();
            for &i in idx {
                pipe.add_command(cmds[i].1.clone());
            }
            async move {
                let values = match (self, slot) {
                    (Conn::Cluster(c), Some(slot)) => {
                        Self::cluster(c)
                            .await?
                            .route_pipeline(
                                pipe,
                                0,
                                idx.len(),
                                SingleNodeRoutingInfo::SpecificNode(Route::new(
                                    *slot,
                                    SlotAddr::Master,
                                )),
                            )
                            .await?
                    }
                    _ => self.pipeline(&pipe, idx.len()).await?,
                };
                let mut out = Vec::with_capacity(values.len());
                for (&i, v) in idx.iter().zip(values) {
                    out.push(match v.extract_error() {
                        Err(e) if not_run(&e) => {
                            if let (Conn::Cluster(c), true) = (self, moved(&e)) {
                                *c.slots.lock().unwrap_or_else(|e| e.into_inner()) = None;
                            }
                            self.run_one(script, &cmds[i].1).await?
                        }
                        other => other?,
                    });
                }
                Ok::<_, RedisError>(out)
            }
        }))
        .await?;
        let mut out: Vec<Option<Value>> = (0..cmds.len()).map(|_| None).collect();
        for ((_, idx), values) in batches.iter().zip(answers) {
            if values.len() != idx.len() {
                return Err(unexpected("pipeline answer count"));
            }
            for (&i, v) in idx.iter().zip(values) {
                out[i] = Some(v);
            }
        }
        Ok(out.into_iter().map(Option::unwrap_or_default).collect())
    }

    async fn run_one(&self, script: Option<&Script>, cmd: &Cmd) -> RedisResult<Value> {
        match script {
            Some(s) => self.eval(s, cmd).await,
            None => self.query(cmd).await,
        }
    }

    /// Sends a node-level command (SCAN) to one node.
    pub(crate) async fn query_node(&self, node: &Node, cmd: Cmd) -> RedisResult<Value> {
        let routing = match node {
            Node::Single => return self.query(&cmd).await,
            Node::BySlot(k) => {
                SingleNodeRoutingInfo::SpecificNode(Route::with_key(k, SlotAddr::Master))
            }
            Node::ByAddress(host, port) => SingleNodeRoutingInfo::ByAddress {
                host: host.clone(),
                port: *port,
            },
        };
        let Conn::Cluster(c) = self else {
            return self.query(&cmd).await;
        };
        Self::cluster(c)
            .await?
            .route_command(cmd, RoutingInfo::SingleNode(routing))
            .await?
            .extract_error()
    }
}

pub(crate) fn is_noscript(e: &RedisError) -> bool {
    e.kind() == ErrorKind::Server(ServerErrorKind::NoScript)
}

/// Errors with which the server refuses a command before running it, so sending it again
/// cannot apply it twice.
fn not_run(e: &RedisError) -> bool {
    matches!(
        e.kind(),
        ErrorKind::Server(
            ServerErrorKind::NoScript
                | ServerErrorKind::Moved
                | ServerErrorKind::Ask
                | ServerErrorKind::TryAgain
                | ServerErrorKind::ClusterDown
                | ServerErrorKind::BusyLoading
                | ServerErrorKind::MasterDown
        )
    )
}

fn moved(e: &RedisError) -> bool {
    matches!(
        e.kind(),
        ErrorKind::Server(ServerErrorKind::Moved | ServerErrorKind::Ask)
    )
}

pub(crate) fn as_array(v: Value) -> RedisResult<Vec<Value>> {
    match v {
        Value::Array(a) | Value::Set(a) => Ok(a),
        _ => Err(unexpected("reply that is not an array")),
    }
}

pub(crate) fn unexpected(what: &'static str) -> RedisError {
    RedisError::from((
        ErrorKind::UnexpectedReturnType,
        "unexpected reply",
        what.to_owned(),
    ))
}

/// Maps a Redis error to the store's: a foreign value at one of our keys is corrupt data,
/// anything else means the store cannot decide now.
pub(crate) fn store_error(e: RedisError) -> StoreError {
    match e.code() {
        Some("WRONGTYPE") => StoreError::Corrupt(format!("a record key holds another type: {e}")),
        _ if e.kind() == ErrorKind::UnexpectedReturnType || e.kind() == ErrorKind::Parse => {
            StoreError::Corrupt(e.to_string())
        }
        _ => StoreError::unavailable(e),
    }
}
