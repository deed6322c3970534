//! A pull-style receiver, for programs that run their own consumer loop.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use lapin::Connection;
use tokio::sync::Mutex;

use crate::consumer::open;
use crate::delivery::{AmqpDelivery, Settler};
use crate::error::AmqpError;
use crate::stats::Stats;
use crate::topology::Topology;

struct Session {
    _conn: Arc<Connection>,
    settler: Arc<Settler>,
    deliveries: lapin::Consumer,
}

/// Hands out deliveries one `recv` at a time, for callers that drive
/// [`idemq_core::adapter::process`] themselves; [`Consumer`](crate::Consumer) is the
/// ready-made loop.
///
/// The connection opens on the first `recv` and again after it is lost (the failing `recv`
/// returns the error; the next one reconnects). Deliveries settle themselves as
/// [`AmqpDelivery`] describes.
pub struct Receiver {
    uri: String,
    topology: Arc<Topology>,
    prefetch: u16,
    name: String,
    stats: Arc<Stats>,
    session: Mutex<Option<Session>>,
}

impl Receiver {
    /// A receiver of `topology`'s work queue on the broker at `uri`.
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
            name,
            stats: Arc::new(Stats::default()),
            session: Mutex::new(None),
        }
    }

    /// How many unacked deliveries the broker sends ahead (default 32).
    pub fn prefetch(mut self, n: u16) -> Self {
        self.prefetch = n.max(1);
        self
    }

    /// What the deliveries of this receiver did.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Opens the connection now, if it is not open, so a broker that is down is reported
    /// before anything else happens.
    pub async fn open(&self) -> Result<(), AmqpError> {
        let mut guard = self.session.lock().await;
        self.open_locked(&mut guard).await
    }

    async fn open_locked(&self, guard: &mut Option<Session>) -> Result<(), AmqpError> {
        if guard.is_none() {
            let (conn, channel, deliveries) =
                open(&self.uri, &self.name, &self.topology, self.prefetch, true).await?;
            self.stats.sessions.inc();
            let settler = Arc::new(Settler {
                channel,
                topology: self.topology.clone(),
                stats: self.stats.clone(),
            });
            *guard = Some(Session {
                _conn: conn,
                settler,
                deliveries,
            });
        }
        Ok(())
    }

    /// The next delivery, or `None` if none arrived within `wait`.
    pub async fn recv(&self, wait: Duration) -> Result<Option<AmqpDelivery>, AmqpError> {
        let mut guard = self.session.lock().await;
        self.open_locked(&mut guard).await?;
        let session = guard.as_mut().expect("opened above");
        match tokio::time::timeout(wait, session.deliveries.next()).await {
            Err(_) => Ok(None),
            Ok(Some(Ok(d))) => Ok(Some(AmqpDelivery::new(d, session.settler.clone()))),
            Ok(Some(Err(e))) => {
                *guard = None;
                Err(e.into())
            }
            Ok(None) => {
                *guard = None;
                Err(AmqpError::Cancelled)
            }
        }
    }
}
