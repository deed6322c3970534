use std::future::Future;
use std::time::Duration;

use idemq_core::StoreError;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

/// What a [`Sweeper`] did so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepStats {
    /// Completed passes (a pass deletes batches until one comes back short).
    pub passes: u64,
    /// `DELETE` statements run.
    pub batches: u64,
    /// Rows deleted.
    pub deleted: u64,
    /// Batches that failed (the pass then ends and the next one retries).
    pub errors: u64,
}

/// A background task deleting expired rows in small batches.
///
/// Each pass runs one short `DELETE` of at most `batch` rows after another until a batch
/// comes back short, then sleeps for the interval: never one long delete that would hold
/// locks on a large part of the table. Dropping the handle stops the task.
#[derive(Debug)]
pub struct Sweeper {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    stats: watch::Receiver<SweepStats>,
}

impl Sweeper {
    /// Spawns the loop on the current tokio runtime; `delete(batch)` deletes at most `batch`
    /// expired rows and returns how many it deleted. The first pass starts at once.
    pub fn spawn<F, Fut>(interval: Duration, batch: u64, delete: F) -> Self
    where
        F: Fn(u64) -> Fut + Send + 'static,
        Fut: Future<Output = Result<u64, StoreError>> + Send,
    {
        let batch = batch.max(1);
        let (stop_tx, mut stop_rx) = oneshot::channel();
        let (stats_tx, stats) = watch::channel(SweepStats::default());
        let task = tokio::spawn(async move {
            let mut s = SweepStats::default();
            loop {
                loop {
                    match delete(batch).await {
                        Ok(n) => {
                            s.batches += 1;
                            s.deleted += n;
                            if n < batch {
                                break;
                            }
                        }
                        Err(e) => {
                            s.errors += 1;
                            tracing::warn!(error = %e, "sweeping expired idempotency rows failed");
                            break;
                        }
                    }
                    // Let other work in between two batches.
                    tokio::task::yield_now().await;
                }
                s.passes += 1;
                stats_tx.send_replace(s);
                tokio::select! {
                    _ = &mut stop_rx => return,
                    _ = tokio::time::sleep(interval) => {}
                }
            }
        });
        Self {
            stop: Some(stop_tx),
            task: Some(task),
            stats,
        }
    }

    /// [`Sweeper::spawn`] for a store's own `sweep`: each batch runs
    /// `sweep(store.clone(), batch)`.
    pub fn spawn_on<S, F, Fut>(store: S, interval: Duration, batch: u64, sweep: F) -> Self
    where
        S: Clone + Send + Sync + 'static,
        F: Fn(S, u64) -> Fut + Send + 'static,
        Fut: Future<Output = Result<u64, StoreError>> + Send,
    {
        Self::spawn(interval, batch, move |n| sweep(store.clone(), n))
    }

    /// The counts so far.
    pub fn stats(&self) -> SweepStats {
        *self.stats.borrow()
    }

    /// Waits until the loop has completed `n` passes since it was spawned, and returns the
    /// counts then. Counted from the spawn, not from this call: the first pass starts at once
    /// and may well end before anyone waits for it.
    pub async fn wait_passes(&mut self, n: u64) -> SweepStats {
        let reached = self.stats.wait_for(|s| s.passes >= n).await.map(|s| *s);
        // An error means the task ended (it panicked): report what it did.
        reached.unwrap_or_else(|_| *self.stats.borrow())
    }

    /// Stops the loop after its current batch and waits for it to end.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Sweeper {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn a_pass_ended_before_the_wait_still_counts() {
        let mut sweeper = Sweeper::spawn(Duration::from_secs(3600), 10, |_| async { Ok(0) });
        while sweeper.stats().passes == 0 {
            tokio::task::yield_now().await;
        }
        // The next pass is an hour away: only a wait counted from the spawn returns.
        let s = tokio::time::timeout(Duration::from_secs(5), sweeper.wait_passes(1))
            .await
            .expect("the first pass was already done");
        assert_eq!(s.passes, 1);
        sweeper.stop().await;
    }

    #[tokio::test]
    async fn a_pass_deletes_in_batches_until_one_comes_back_short() {
        let left = Arc::new(AtomicU64::new(25));
        let l = left.clone();
        let mut sweeper = Sweeper::spawn(Duration::from_secs(3600), 10, move |batch| {
            let l = l.clone();
            async move {
                let n = l.load(Ordering::SeqCst).min(batch);
                l.fetch_sub(n, Ordering::SeqCst);
                Ok(n)
            }
        });
        let s = sweeper.wait_passes(1).await;
        assert_eq!((s.passes, s.batches, s.deleted), (1, 3, 25));
        assert_eq!(left.load(Ordering::SeqCst), 0);
        sweeper.stop().await;
    }
}
