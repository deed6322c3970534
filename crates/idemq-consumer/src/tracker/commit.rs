//! [`CommitTracker`]: which offset of each partition may be committed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::Hash;

/// A tracked record: the receipt [`CommitTracker::track`] hands out and
/// [`CommitTracker::settle`] takes back.
///
/// It remembers which assignment of its partition it belongs to, so a record abandoned at
/// a revocation cannot settle the same offset of a later assignment of that partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Ticket<P> {
    partition: P,
    offset: i64,
    assignment: u64,
}

impl<P> Ticket<P> {
    /// The partition of the record.
    pub fn partition(&self) -> &P {
        &self.partition
    }

    /// The offset of the record.
    pub fn offset(&self) -> i64 {
        self.offset
    }
}

/// What [`CommitTracker::settle`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// The record was settled and the committable offset of its partition moved to this.
    Moved(i64),
    /// The record was settled; an earlier record of its partition is still in flight.
    Held,
    /// Nothing was in flight for this ticket: it was settled already, or its partition
    /// was revoked since it was tracked.
    Unknown,
}

impl Settled {
    /// Whether the committable offset moved.
    pub fn moved(self) -> bool {
        matches!(self, Settled::Moved(_))
    }
}

/// What a revoked partition leaves behind.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Revoked {
    /// The offset that may be committed for the partition, if any record settled.
    pub committable: Option<i64>,
    /// The offsets still in flight when the partition was forgotten, in ascending order;
    /// the next owner of the partition receives them again.
    pub abandoned: Vec<i64>,
}

/// [`CommitTracker::track`] was given an offset not past the last one tracked for its
/// partition; the record was not tracked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("offset {offset} is not past the last tracked offset {last} of its partition")]
pub struct OutOfOrder {
    /// The offset given.
    pub offset: i64,
    /// The last offset tracked for the partition.
    pub last: i64,
}

/// One assignment of one partition.
#[derive(Debug)]
struct Partition {
    assignment: u64,
    /// The highest offset tracked.
    last: i64,
    /// Each unsettled offset, with the offset tracked just before it (`None` for the first
    /// record of the assignment): once it is the lowest unsettled one, everything up to
    /// that previous offset is settled.
    unsettled: BTreeMap<i64, Option<i64>>,
    committable: Option<i64>,
}

impl Partition {
    /// One past the last record of the settled prefix, from the current state.
    fn prefix_end(&self) -> Option<i64> {
        match self.unsettled.first_key_value() {
            None => Some(self.last + 1),
            Some((_, previous)) => previous.map(|offset| offset + 1),
        }
    }
}

/// Per partition, the records received and not yet settled, and the offset that may be
/// committed: Kafka's convention, the offset of the next record to consume, i.e. one past
/// the last record of the longest settled prefix of the tracked records.
///
/// Records are [`track`](Self::track)ed as they are received, in increasing offset order
/// within a partition (gaps are fine), and [`settle`](Self::settle)d in any order, whether
/// they were handled, skipped as duplicates or moved to a retry or dead-letter path. The
/// committable offset never passes an unsettled record and only moves forward. Every
/// operation is O(log n) in the records in flight.
///
/// A partition is assigned by its first `track` and forgotten by [`revoke`](Self::revoke).
#[derive(Debug)]
pub struct CommitTracker<P> {
    partitions: HashMap<P, Partition>,
    /// Partitions whose committable offset moved since the last `take_commits`.
    moved: BTreeSet<P>,
    in_flight: usize,
    next_assignment: u64,
}

impl<P> Default for CommitTracker<P> {
    fn default() -> Self {
        Self {
            partitions: HashMap::new(),
            moved: BTreeSet::new(),
            in_flight: 0,
            next_assignment: 0,
        }
    }
}

impl<P: Eq + Hash + Clone + Ord> CommitTracker<P> {
    /// A tracker with no partitions.
    pub fn new() -> Self {
        Self::default()
    }

    /// Tracks a record just received, which is in flight until its ticket is settled.
    ///
    /// Fails, tracking nothing, if `offset` is not past the last offset tracked for
    /// `partition` in its current assignment.
    pub fn track(&mut self, partition: P, offset: i64) -> Result<Ticket<P>, OutOfOrder> {
        let assignment = match self.partitions.get_mut(&partition) {
            Some(state) => {
                if offset <= state.last {
                    return Err(OutOfOrder {
                        offset,
                        last: state.last,
                    });
                }
                state.unsettled.insert(offset, Some(state.last));
                state.last = offset;
                state.assignment
            }
            None => {
                let assignment = self.next_assignment;
                self.next_assignment += 1;
                let state = Partition {
                    assignment,
                    last: offset,
                    unsettled: BTreeMap::from([(offset, None)]),
                    committable: None,
                };
                self.partitions.insert(partition.clone(), state);
                assignment
            }
        };
        self.in_flight += 1;
        Ok(Ticket {
            partition,
            offset,
            assignment,
        })
    }

    /// Settles a tracked record, in any order, and says whether the committable offset of
    /// its partition moved. A ticket settled already, or from before a revocation, changes
    /// nothing and is reported as [`Settled::Unknown`].
    pub fn settle(&mut self, ticket: &Ticket<P>) -> Settled {
        let Some(state) = self.partitions.get_mut(&ticket.partition) else {
            return Settled::Unknown;
        };
        if state.assignment != ticket.assignment || state.unsettled.remove(&ticket.offset).is_none()
        {
            return Settled::Unknown;
        }
        self.in_flight -= 1;
        match state.prefix_end() {
            Some(end) if state.committable != Some(end) => {
                debug_assert!(state.committable < Some(end), "committable went back");
                state.committable = Some(end);
                self.moved.insert(ticket.partition.clone());
                Settled::Moved(end)
            }
            _ => Settled::Held,
        }
    }

    /// Whether `ticket` is still in flight: tracked, not settled, and from the current
    /// assignment of its partition (a record revoked since is not).
    pub fn is_current(&self, ticket: &Ticket<P>) -> bool {
        self.partitions.get(&ticket.partition).is_some_and(|state| {
            state.assignment == ticket.assignment && state.unsettled.contains_key(&ticket.offset)
        })
    }

    /// The offset that may be committed for `partition` (the next one to consume), or
    /// `None` if no record of its current assignment has settled past its first.
    pub fn committable(&self, partition: &P) -> Option<i64> {
        self.partitions.get(partition)?.committable
    }

    /// How many records of `partition` are in flight.
    pub fn pending(&self, partition: &P) -> usize {
        self.partitions
            .get(partition)
            .map_or(0, |state| state.unsettled.len())
    }

    /// How many records are in flight over all partitions.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Each partition whose committable offset moved since the last call, with that
    /// offset, in partition order: what a periodic committer commits.
    pub fn take_commits(&mut self) -> Vec<(P, i64)> {
        let moved = std::mem::take(&mut self.moved);
        moved
            .into_iter()
            .filter_map(|partition| {
                let offset = self.committable(&partition)?;
                Some((partition, offset))
            })
            .collect()
    }

    /// Forgets `partition` at once (see [`PartitionLog::revoke`] for the draining kind):
    /// reports the offset that may be committed and the records still in flight, whose
    /// tickets settle nothing from now on. An unknown partition reports nothing.
    ///
    /// [`PartitionLog::revoke`]: super::PartitionLog::revoke
    pub fn revoke(&mut self, partition: &P) -> Revoked {
        self.moved.remove(partition);
        let Some(state) = self.partitions.remove(partition) else {
            return Revoked::default();
        };
        self.in_flight -= state.unsettled.len();
        Revoked {
            committable: state.committable,
            abandoned: state.unsettled.into_keys().collect(),
        }
    }
}
