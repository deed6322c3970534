use std::future::Future;

use idemq_core::store::ScopeStats;
use idemq_core::{State, StoreError};

use crate::TxError;

/// The largest result a SQL store accepts unless configured otherwise: 1 MiB.
pub const DEFAULT_MAX_RESULT_BYTES: usize = 1024 * 1024;

/// How many times a transaction that hit a deadlock or a busy database is run again.
pub const MAX_RETRIES: u32 = 8;

/// Refuses a result larger than `max` bytes with [`StoreError::ResultTooLarge`]: results are
/// never truncated.
pub fn check_result_size(result: Option<&[u8]>, max: usize) -> Result<(), StoreError> {
    match result {
        Some(r) if r.len() > max => Err(StoreError::ResultTooLarge { size: r.len(), max }),
        _ => Ok(()),
    }
}

/// Waits a little before running a transaction again after a deadlock: a few milliseconds,
/// growing with `tries` and jittered, so the transactions that collided do not collide
/// again in lockstep.
pub async fn backoff(tries: u32) {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let ceiling = 1u64 << tries.min(6); // up to 64 ms
    let ms = 1 + u64::from(nanos) % ceiling;
    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
}

/// Runs `f` again, after a short [`backoff`], while it fails with a deadlock or a busy
/// database, at most [`MAX_RETRIES`] times.
pub async fn retrying<T, F, Fut>(mut f: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, TxError>>,
{
    let mut tries = 0;
    loop {
        match f().await {
            Err(e) if e.is_retryable() && tries < MAX_RETRIES => {
                tries += 1;
                backoff(tries).await;
            }
            r => return r.map_err(StoreError::from),
        }
    }
}

/// Folds `SELECT state, COUNT(*) ... GROUP BY state` rows into [`ScopeStats`].
pub fn scope_stats(rows: Vec<(String, i64)>) -> Result<ScopeStats, StoreError> {
    let mut stats = ScopeStats::default();
    for (state, n) in rows {
        let n = u64::try_from(n).unwrap_or(0);
        match State::parse(&state) {
            Some(State::Consuming) => stats.consuming = n,
            Some(State::Consumed) => stats.consumed = n,
            None => return Err(StoreError::Corrupt(format!("unknown state {state:?}"))),
        }
    }
    Ok(stats)
}
