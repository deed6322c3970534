use bytes::Bytes;

use crate::key::Fingerprint;
use crate::record::Claim;
use crate::time::UnixMillis;

/// What became of one delivery. Every outcome but [`Outcome::InProgress`] and
/// [`Outcome::Failed`] may be acknowledged to the broker.
#[derive(Debug)]
pub enum Outcome<E> {
    /// The handler ran and its effect is recorded as consumed: acknowledge.
    Processed {
        /// The result stored with the record.
        result: Option<Bytes>,
        /// Which claim of this key ran it, from 1.
        attempt: u32,
        /// False only in fail-open mode when the store was down: the effect is not recorded.
        protected: bool,
    },
    /// A duplicate of a consumed message: the handler did not run. Acknowledge.
    Duplicate {
        /// The result the first run stored.
        result: Option<Bytes>,
    },
    /// Another consumer is running this key now: redeliver later, after a delay.
    InProgress {
        /// When that consumer's lease runs out.
        until: UnixMillis,
    },
    /// The key was used before for a different payload: a producer bug or a key collision.
    Conflict {
        /// The fingerprint of the payload first claimed under the key.
        existing: Fingerprint,
        /// The fingerprint of this message's payload.
        incoming: Option<Fingerprint>,
    },
    /// The handler failed; the claim was released so a redelivery runs it again.
    Failed {
        /// The handler's error.
        error: E,
        /// Which claim of this key failed, from 1.
        attempt: u32,
    },
}

impl<E> Outcome<E> {
    /// The outcome of a claim this consumer did not acquire (the handler does not run), or
    /// `None` for [`Claim::Acquired`]. `incoming` is the fingerprint the claim presented.
    pub fn settled(claim: Claim, incoming: Option<Fingerprint>) -> Option<Self> {
        match claim {
            Claim::Done { result } => Some(Outcome::Duplicate { result }),
            Claim::InProgress { until } => Some(Outcome::InProgress { until }),
            Claim::Conflict { existing } => Some(Outcome::Conflict { existing, incoming }),
            Claim::Acquired { .. } => None,
        }
    }

    /// True when the broker may be told the message is done.
    pub fn is_ackable(&self) -> bool {
        matches!(self, Outcome::Processed { .. } | Outcome::Duplicate { .. })
    }

    /// A short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Processed { .. } => "processed",
            Outcome::Duplicate { .. } => "duplicate",
            Outcome::InProgress { .. } => "in_progress",
            Outcome::Conflict { .. } => "conflict",
            Outcome::Failed { .. } => "failed",
        }
    }
}

/// What a handler may return; it is stored with the record and given back to duplicates.
pub trait HandlerOutput {
    /// The bytes to store, if any.
    fn into_stored(self) -> Option<Bytes>;
}

impl HandlerOutput for () {
    fn into_stored(self) -> Option<Bytes> {
        None
    }
}

impl HandlerOutput for Bytes {
    fn into_stored(self) -> Option<Bytes> {
        Some(self)
    }
}

impl HandlerOutput for Vec<u8> {
    fn into_stored(self) -> Option<Bytes> {
        Some(self.into())
    }
}

impl HandlerOutput for String {
    fn into_stored(self) -> Option<Bytes> {
        Some(self.into())
    }
}

impl HandlerOutput for &'static str {
    fn into_stored(self) -> Option<Bytes> {
        Some(Bytes::from_static(self.as_bytes()))
    }
}

impl<T: HandlerOutput> HandlerOutput for Option<T> {
    fn into_stored(self) -> Option<Bytes> {
        self.and_then(HandlerOutput::into_stored)
    }
}
