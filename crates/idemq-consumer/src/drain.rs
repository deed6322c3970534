//! The bounded drain of a session's handlers.

use std::time::Duration;

use tokio::task::JoinSet;
use tracing::warn;

use crate::stats::Stats;

/// Counts a handler task that ended: a panic dropped its delivery unsettled, and the broker
/// gives it back.
pub(crate) fn joined(joined: Result<(), tokio::task::JoinError>, stats: &Stats) {
    if let Err(e) = joined {
        if e.is_panic() {
            stats.panicked.inc();
            stats.changed();
            warn!("a handler panicked; its delivery is redelivered");
        }
    }
}

/// Waits up to `grace` for the running handlers, then aborts the rest; returns how many
/// were aborted.
pub(crate) async fn drain(tasks: &mut JoinSet<()>, grace: Duration, stats: &Stats) -> usize {
    let settled = tokio::time::timeout(grace, async {
        while let Some(j) = tasks.join_next().await {
            joined(j, stats);
        }
    })
    .await;
    if settled.is_ok() {
        return 0;
    }
    let abandoned = tasks.len();
    tasks.shutdown().await;
    abandoned
}
