//! Wall-clock helpers: stores keep deadlines as Unix milliseconds so every backend agrees.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, as stored in records.
pub type UnixMillis = i64;

/// The current wall-clock time in Unix milliseconds.
pub fn now_ms() -> UnixMillis {
    to_ms(SystemTime::now())
}

/// Converts a [`SystemTime`] to Unix milliseconds (times before the epoch become 0).
pub fn to_ms(t: SystemTime) -> UnixMillis {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as UnixMillis)
        .unwrap_or(0)
}

/// Converts Unix milliseconds back to a [`SystemTime`].
pub fn from_ms(ms: UnixMillis) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

/// A duration in whole milliseconds, saturating, as stores take them.
pub fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
