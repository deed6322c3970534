use std::time::Duration;

use crate::key::Scope;

/// What the engine does when the store cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailMode {
    /// Return an error, so the message is redelivered and nothing is acknowledged (default).
    #[default]
    Closed,
    /// Run the handler without protection, logging and counting each such message.
    /// Duplicates may then apply twice: opt in only where availability beats exactness.
    Open,
}

/// How one consumer uses the store.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The namespace of this consumer's keys.
    pub scope: Scope,
    /// How long a claim holds before another consumer may take it over (default 60 s).
    pub lease: Duration,
    /// How long consumed records are kept, and so how long duplicates are caught
    /// (default 24 h).
    pub retention: Duration,
    /// How often a running handler extends its lease; `None` disables the heartbeat
    /// (default a third of the lease).
    pub heartbeat: Option<Duration>,
    /// Fail-closed or fail-open.
    pub fail_mode: FailMode,
    /// The largest handler result stored, in bytes (default 64 KiB).
    pub max_result_bytes: usize,
}

impl EngineConfig {
    /// The defaults for a scope.
    pub fn new(scope: Scope) -> Self {
        let lease = Duration::from_secs(60);
        Self {
            scope,
            lease,
            retention: Duration::from_secs(24 * 3600),
            heartbeat: Some(lease / 3),
            fail_mode: FailMode::Closed,
            max_result_bytes: 64 * 1024,
        }
    }

    /// Sets the lease, and the heartbeat to a third of it.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self.heartbeat = self.heartbeat.map(|_| lease / 3);
        self
    }

    /// Sets the retention of consumed records.
    pub fn retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// Sets the heartbeat interval, or turns it off with `None`.
    pub fn heartbeat(mut self, every: Option<Duration>) -> Self {
        self.heartbeat = every;
        self
    }

    /// Sets the fail mode.
    pub fn fail_mode(mut self, mode: FailMode) -> Self {
        self.fail_mode = mode;
        self
    }

    /// Sets the largest stored result.
    pub fn max_result_bytes(mut self, max: usize) -> Self {
        self.max_result_bytes = max;
        self
    }
}
