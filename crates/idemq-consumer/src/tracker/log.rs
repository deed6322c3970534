//! [`PartitionLog`]: a [`CommitTracker`] shared between the handlers and the rebalance
//! listener.

use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::commit::{CommitTracker, OutOfOrder, Revoked, Settled, Ticket};

struct Shared<P> {
    tracker: Mutex<CommitTracker<P>>,
    /// Woken when a partition has no record left in flight.
    drained: Notify,
}

/// A shareable [`CommitTracker`] (cloning shares it) for a runtime whose handlers settle
/// from their own tasks, with a [`revoke`](Self::revoke) that waits for a partition to
/// drain.
pub struct PartitionLog<P> {
    shared: Arc<Shared<P>>,
}

impl<P> Clone for PartitionLog<P> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<P> Default for PartitionLog<P> {
    fn default() -> Self {
        Self {
            shared: Arc::new(Shared {
                tracker: Mutex::new(CommitTracker::default()),
                drained: Notify::new(),
            }),
        }
    }
}

impl<P: Eq + Hash + Clone + Ord> PartitionLog<P> {
    /// A log with no partitions.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, CommitTracker<P>> {
        // Every update leaves the tracker consistent, so a panic elsewhere does not spoil it.
        self.shared
            .tracker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// [`CommitTracker::track`].
    pub fn track(&self, partition: P, offset: i64) -> Result<Ticket<P>, OutOfOrder> {
        self.lock().track(partition, offset)
    }

    /// [`CommitTracker::settle`], waking a [`revoke`](Self::revoke) waiting for the
    /// partition once its last record in flight is settled.
    pub fn settle(&self, ticket: &Ticket<P>) -> Settled {
        let mut tracker = self.lock();
        let settled = tracker.settle(ticket);
        if settled != Settled::Unknown && tracker.pending(ticket.partition()) == 0 {
            self.shared.drained.notify_waiters();
        }
        settled
    }

    /// [`CommitTracker::is_current`].
    pub fn is_current(&self, ticket: &Ticket<P>) -> bool {
        self.lock().is_current(ticket)
    }

    /// [`CommitTracker::committable`].
    pub fn committable(&self, partition: &P) -> Option<i64> {
        self.lock().committable(partition)
    }

    /// [`CommitTracker::pending`].
    pub fn pending(&self, partition: &P) -> usize {
        self.lock().pending(partition)
    }

    /// [`CommitTracker::in_flight`].
    pub fn in_flight(&self) -> usize {
        self.lock().in_flight()
    }

    /// [`CommitTracker::take_commits`].
    pub fn take_commits(&self) -> Vec<(P, i64)> {
        self.lock().take_commits()
    }

    /// Forgets `partition` at once, for a rebalance callback that cannot wait: see
    /// [`CommitTracker::revoke`]. The abandoned records' tickets settle nothing from now on.
    pub fn revoke_now(&self, partition: &P) -> Revoked {
        let revoked = self.lock().revoke(partition);
        self.shared.drained.notify_waiters();
        revoked
    }

    /// Revokes `partition` after a rebalance: waits until every record of it in flight is
    /// settled, or `drain_timeout` passes, then forgets it (see [`CommitTracker::revoke`])
    /// and reports the offset that may be committed and the records abandoned.
    ///
    /// Stop tracking records of `partition` first: records tracked while it drains are
    /// waited for too.
    pub async fn revoke(&self, partition: &P, drain_timeout: Duration) -> Revoked {
        // A timeout too long for the clock is no timeout.
        let deadline = Instant::now().checked_add(drain_timeout);
        loop {
            let drained = self.shared.drained.notified();
            tokio::pin!(drained);
            // Registered before the check, so a settle between the check and the wait
            // still wakes it.
            drained.as_mut().enable();
            if self.pending(partition) == 0 {
                break;
            }
            match deadline {
                Some(deadline) => {
                    if tokio::time::timeout_at(deadline, drained).await.is_err() {
                        break;
                    }
                }
                None => drained.await,
            }
        }
        self.lock().revoke(partition)
    }
}
