use crate::key::{KeyError, RecordKey};
use crate::store::StoreError;

/// Why the engine could not decide a message. The message must not be acknowledged as done:
/// an adapter redelivers it ([`EngineError::Store`], [`EngineError::LeaseLost`]) or sends it to
/// its dead-letter path ([`EngineError::Key`]).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The message cannot be keyed: a poison message, for the dead-letter path.
    #[error("cannot key message: {0}")]
    Key(#[from] KeyError),
    /// The store failed and the engine is fail-closed: redeliver later.
    #[error(transparent)]
    Store(StoreError),
    /// The handler ran but its lease was taken over meanwhile; the new owner's record stands
    /// and this owner's completion was refused by the fencing token.
    #[error("lease lost on {key}: completion refused by the fencing token")]
    LeaseLost {
        /// The record whose lease was lost.
        key: RecordKey,
    },
}

impl From<StoreError> for EngineError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::LeaseLost { key } => EngineError::LeaseLost { key },
            other => EngineError::Store(other),
        }
    }
}
