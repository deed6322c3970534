//! Counters of what a consumer did, for tests, the demo and dashboards.

use std::sync::atomic::{AtomicU64, Ordering};

use idemq_core::adapter::Disposition;
use tokio::sync::Notify;

/// One counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub(crate) fn inc(&self) {
        self.add(1);
    }

    pub(crate) fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn max(&self, n: u64) {
        self.0.fetch_max(n, Ordering::Relaxed);
    }

    /// The current count.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// What a consumer has done since it started.
#[derive(Debug, Default)]
pub struct Stats {
    /// Sessions opened (1 + reconnections).
    pub sessions: Counter,
    /// Deliveries read from the broker.
    pub received: Counter,
    /// Deliveries whose handler ran and whose effect is recorded, acked.
    pub processed: Counter,
    /// Deliveries acked without running the handler: their key was consumed already.
    pub duplicates: Counter,
    /// Deliveries put back without spending an attempt: their key was in progress elsewhere,
    /// or the store could not decide.
    pub redelivered: Counter,
    /// Failed attempts sent back to be retried after their backoff.
    pub retried: Counter,
    /// Deliveries moved to the dead-letter path.
    pub dead_lettered: Counter,
    /// Deliveries that could not be settled (the connection died); the broker redelivers them.
    pub unsettled: Counter,
    /// Handlers still running when their session ended and the drain timeout ran out,
    /// aborted; the broker redelivers their messages.
    pub abandoned: Counter,
    /// Handlers that panicked; their deliveries were dropped unsettled, so the broker
    /// redelivers them.
    pub panicked: Counter,
    /// Batches of two or more deliveries claimed together.
    pub batches: Counter,
    /// The largest batch so far.
    pub largest_batch: Counter,
    changed: Notify,
}

impl Stats {
    /// Wakes whoever waits in [`Stats::wait_until`]; called after each change.
    pub(crate) fn changed(&self) {
        self.changed.notify_waiters();
    }

    /// Waits until `f` holds, looking again after every change.
    pub async fn wait_until(&self, f: impl Fn(&Stats) -> bool) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            // Registered before looking, so a change made after the look still wakes us.
            changed.as_mut().enable();
            if f(self) {
                return;
            }
            changed.await;
        }
    }

    /// Counts one settled delivery.
    pub(crate) fn count(&self, disposition: &Disposition) {
        match disposition {
            Disposition::Ack { duplicate: false } => self.processed.inc(),
            Disposition::Ack { duplicate: true } => self.duplicates.inc(),
            Disposition::Redeliver { .. } => self.redelivered.inc(),
            Disposition::Retry { .. } => self.retried.inc(),
            Disposition::DeadLetter(_) => self.dead_lettered.inc(),
        }
    }

    /// Deliveries acked, processed or duplicate.
    pub fn acked(&self) -> u64 {
        self.processed.get() + self.duplicates.get()
    }

    /// Deliveries settled one way or another.
    pub fn settled(&self) -> u64 {
        self.acked() + self.redelivered.get() + self.retried.get() + self.dead_lettered.get()
    }
}
