//! Which records of a partition wait for which while they run, and where a failed record
//! waits for its next attempt.

use std::fmt;
use std::sync::Arc;

use rdkafka::message::{Headers, OwnedMessage};
use rdkafka::Message as _;
use tokio::sync::mpsc::UnboundedSender;

use crate::delivery::Part;

/// A function naming a record's ordering key; `None` puts the record with the partition's
/// other keyless records.
pub type OrderingKey = Arc<dyn Fn(&OwnedMessage) -> Option<Vec<u8>> + Send + Sync>;

/// How the records of a partition are ordered while they run.
///
/// Records on their way to another attempt are out of this order when retries go through
/// the retry topic ([`Retries::Topic`]); with [`Retries::InPlace`] a failed record keeps its
/// place and the records behind it wait.
#[derive(Clone, Default)]
pub enum Ordering {
    /// One record of a partition at a time, in offset order (the default): the order a
    /// plain Kafka consumer keeps. A poll batch still claims the heads of all partitions
    /// together.
    #[default]
    Partition,
    /// Within a partition, the records of one ordering key one at a time in offset order,
    /// different keys side by side.
    Key(OrderingKey),
    /// No order: every record runs as soon as a handler is free, for the most throughput.
    Unordered,
}

impl Ordering {
    /// Orders by the record key (Kafka puts one key on one partition).
    pub fn record_key() -> Self {
        Self::Key(Arc::new(|m| m.key().map(<[u8]>::to_vec)))
    }

    /// Orders by the value of the header `name`.
    pub fn header(name: impl Into<String>) -> Self {
        let name = name.into();
        Self::Key(Arc::new(move |m| {
            let hs = m.headers()?;
            hs.iter()
                .find(|h| h.key == name)
                .and_then(|h| h.value.map(<[u8]>::to_vec))
        }))
    }

    /// Orders by a key `f` extracts from the record (a field of the payload, say).
    pub fn by<F>(f: F) -> Self
    where
        F: Fn(&OwnedMessage) -> Option<Vec<u8>> + Send + Sync + 'static,
    {
        Self::Key(Arc::new(f))
    }

    /// The lane `record` runs in, if it waits for anything.
    pub(crate) fn lane(&self, part: &Part, record: &OwnedMessage) -> Option<Lane> {
        let key = match self {
            Ordering::Unordered => return None,
            Ordering::Partition => None,
            Ordering::Key(f) => f(record),
        };
        Some(Lane {
            part: part.clone(),
            key,
        })
    }
}

impl fmt::Debug for Ordering {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Ordering::Partition => "Partition",
            Ordering::Key(_) => "Key(..)",
            Ordering::Unordered => "Unordered",
        })
    }
}

/// Where a record waits for its next attempt (a retry, an in-progress duplicate's
/// recheck).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Retries {
    /// A copy goes to `<topic>.idemq-retry` (the default): the partition moves on at once,
    /// and the copy is held back by whichever member reads it until it is due.
    #[default]
    Topic,
    /// The record is held by the session until it is due and runs again from there: its
    /// lane waits for it (order is kept) and its partition commits stop before it. A
    /// consumer restart starts its attempts over.
    InPlace,
}

/// Records of one lane run one at a time.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Lane {
    part: Part,
    key: Option<Vec<u8>>,
}

/// A record's hold on its lane, given back when the record is done with (settled, or
/// dropped): the next record of the lane may then run.
#[derive(Debug)]
pub(crate) struct LaneGuard {
    lane: Option<Lane>,
    free: UnboundedSender<Lane>,
}

impl LaneGuard {
    pub(crate) fn new(lane: Lane, free: UnboundedSender<Lane>) -> Self {
        Self {
            lane: Some(lane),
            free,
        }
    }
}

impl Drop for LaneGuard {
    fn drop(&mut self) {
        if let Some(lane) = self.lane.take() {
            // A closed session's lanes are gone with it.
            let _ = self.free.send(lane);
        }
    }
}
