//! Records and the answers of the store's atomic transitions.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;

use crate::key::{Fingerprint, RecordKey};
use crate::time::UnixMillis;

/// The state of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// A consumer holds a lease and is running the handler (or crashed doing so).
    Consuming,
    /// The handler finished; duplicates are skipped until the record expires.
    Consumed,
}

impl State {
    /// The name stores keep: `CONSUMING` or `CONSUMED`.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Consuming => "CONSUMING",
            State::Consumed => "CONSUMED",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "CONSUMING" => Some(State::Consuming),
            "CONSUMED" => Some(State::Consumed),
            _ => None,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A fencing token: it grows by one each time a record is claimed, so the writes of an owner
/// whose lease was taken over carry an old token and are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FencingToken(pub u64);

impl fmt::Display for FencingToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Everything a store keeps about one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Consuming or consumed.
    pub state: State,
    /// The token of the current (or last) owner.
    pub token: FencingToken,
    /// While consuming, the lease deadline; a released claim has a deadline in the past.
    pub lease_until: UnixMillis,
    /// When the store may forget the record.
    pub expires_at: UnixMillis,
    /// The fingerprint of the payload first claimed under this key.
    pub fingerprint: Option<Fingerprint>,
    /// The handler's stored result, once consumed.
    pub result: Option<Bytes>,
    /// How many times the key was claimed (first run, retries and takeovers).
    pub attempts: u32,
    /// When the record was first written.
    pub created_at: UnixMillis,
    /// When the record last changed.
    pub updated_at: UnixMillis,
}

/// A request to claim a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRequest {
    /// The key to claim.
    pub key: RecordKey,
    /// The payload's fingerprint, checked against the record's.
    pub fingerprint: Option<Fingerprint>,
    /// How long the lease lasts before another consumer may take over.
    pub lease: Duration,
    /// How long a record is kept; a claim that is never completed vanishes after it.
    pub retention: Duration,
}

/// The answer to a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The caller owns the key and must run the handler, then complete or release.
    Acquired {
        /// The token to present on complete, release and extend.
        token: FencingToken,
        /// Which claim of this key this is, from 1.
        attempt: u32,
        /// True when an expired lease of another owner was taken over.
        takeover: bool,
    },
    /// Another consumer holds a live lease: redeliver later, do not run concurrently.
    InProgress {
        /// When that lease runs out.
        until: UnixMillis,
    },
    /// The key was consumed already: acknowledge and skip.
    Done {
        /// The result the first run stored.
        result: Option<Bytes>,
    },
    /// The key exists with a different payload fingerprint.
    Conflict {
        /// The fingerprint the record holds (the first payload claimed under the key).
        existing: Fingerprint,
    },
}

/// One completion of a batch: the arguments of [`Store::complete`](crate::Store::complete).
#[derive(Debug, Clone, Copy)]
pub struct Completion<'a> {
    /// The record to complete.
    pub key: &'a RecordKey,
    /// The token its claim returned.
    pub token: FencingToken,
    /// The result to store with it.
    pub result: Option<&'a [u8]>,
    /// How long the consumed record is kept.
    pub retention: Duration,
}
