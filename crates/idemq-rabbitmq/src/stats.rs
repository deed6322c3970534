//! Counters of what a consumer did, for tests, the demo and dashboards.

use std::sync::atomic::{AtomicU64, Ordering};

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
    /// Deliveries acked as done (processed or duplicate).
    pub acked: Counter,
    /// Deliveries sent to the delay queue because their key was in progress elsewhere or the
    /// store could not decide.
    pub redelivered: Counter,
    /// Failed attempts sent to a retry tier.
    pub retried: Counter,
    /// Deliveries moved to the dead-letter queue.
    pub dead_lettered: Counter,
    /// Deliveries that could not be settled (the channel died); the broker redelivers them.
    pub unsettled: Counter,
    /// Handlers still running when their session ended and the
    /// [drain timeout](crate::Consumer::drain_timeout) ran out, aborted; the broker redelivers
    /// their messages.
    pub abandoned: Counter,
}
