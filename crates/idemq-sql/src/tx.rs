use idemq_core::StoreError;

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
