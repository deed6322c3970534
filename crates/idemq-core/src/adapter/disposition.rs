use std::fmt;
use std::time::Duration;

use crate::engine::Outcome;
use crate::error::EngineError;
use crate::key::Fingerprint;

use super::RetryPolicy;

/// Why a message was sent to the dead-letter path. Adapters put `kind` and `detail` in
/// headers, so an operator can tell a poison message from exhausted retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadLetterReason {
    /// No idempotency key could be taken from the message.
    Unkeyable(String),
    /// The payload could not be decoded.
    Undecodable(String),
    /// The key was used before for another payload.
    Conflict {
        /// The fingerprint of the payload first claimed under the key.
        existing: Fingerprint,
        /// The fingerprint of the refused payload.
        incoming: Option<Fingerprint>,
    },
    /// The handler failed on every attempt.
    RetriesExhausted {
        /// Attempts made.
        attempts: u32,
        /// The last handler error.
        last_error: String,
    },
}

impl DeadLetterReason {
    /// A stable short name: `unkeyable`, `undecodable`, `conflict` or `retries-exhausted`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Unkeyable(_) => "unkeyable",
            Self::Undecodable(_) => "undecodable",
            Self::Conflict { .. } => "conflict",
            Self::RetriesExhausted { .. } => "retries-exhausted",
        }
    }
}

impl fmt::Display for DeadLetterReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unkeyable(e) => write!(f, "cannot key message: {e}"),
            Self::Undecodable(e) => write!(f, "cannot decode message: {e}"),
            Self::Conflict { existing, incoming } => {
                write!(
                    f,
                    "idempotency key reused for a different payload (stored fingerprint {}, this one {})",
                    existing.to_hex(),
                    incoming.map_or_else(|| "none".to_owned(), |f| f.to_hex())
                )
            }
            Self::RetriesExhausted {
                attempts,
                last_error,
            } => write!(f, "failed {attempts} attempts; last error: {last_error}"),
        }
    }
}

/// What the adapter must do with a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Acknowledge: the effect is recorded (or was, for a duplicate).
    Ack {
        /// True when the handler did not run: the key was consumed already.
        duplicate: bool,
    },
    /// Redeliver after `delay` without counting an attempt: another consumer holds the key,
    /// or the store could not decide.
    Redeliver {
        /// How long to hold the message back.
        delay: Duration,
    },
    /// The handler failed: deliver again after `delay` as attempt `next_attempt`.
    Retry {
        /// The backoff delay.
        delay: Duration,
        /// The attempt number of the redelivery.
        next_attempt: u32,
        /// The handler's error, for headers and logs.
        error: String,
    },
    /// Never deliver again to the handler; park the message with its reason.
    DeadLetter(DeadLetterReason),
}

/// Decides a delivery's fate from the engine's answer and the delivery's attempt number
/// (1-based, as the adapter tracks it).
pub fn dispose<E: fmt::Display>(
    result: &Result<Outcome<E>, EngineError>,
    attempt: u32,
    policy: &RetryPolicy,
) -> Disposition {
    match result {
        Ok(Outcome::Processed { .. }) => Disposition::Ack { duplicate: false },
        Ok(Outcome::Duplicate { .. }) => Disposition::Ack { duplicate: true },
        Ok(Outcome::InProgress { .. })
        | Err(EngineError::Store(_) | EngineError::LeaseLost { .. }) => Disposition::Redeliver {
            delay: policy.redeliver_after,
        },
        Ok(Outcome::Conflict { existing, incoming }) => {
            Disposition::DeadLetter(DeadLetterReason::Conflict {
                existing: *existing,
                incoming: *incoming,
            })
        }
        Err(EngineError::Key(e)) => {
            Disposition::DeadLetter(DeadLetterReason::Unkeyable(e.to_string()))
        }
        Ok(Outcome::Failed { error, .. }) => match policy.delay_after(attempt) {
            Some(delay) => Disposition::Retry {
                delay,
                next_attempt: attempt + 1,
                error: error.to_string(),
            },
            None => Disposition::DeadLetter(DeadLetterReason::RetriesExhausted {
                attempts: attempt,
                last_error: error.to_string(),
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::KeyError;
    use crate::store::StoreError;

    fn failed() -> Result<Outcome<&'static str>, EngineError> {
        Ok(Outcome::Failed {
            error: "boom",
            attempt: 1,
        })
    }

    #[test]
    fn done_and_duplicates_are_acked() {
        let p = RetryPolicy::default();
        let done: Result<Outcome<&str>, _> = Ok(Outcome::Duplicate { result: None });
        assert_eq!(dispose(&done, 1, &p), Disposition::Ack { duplicate: true });
    }

    #[test]
    fn failures_retry_with_backoff_then_dead_letter() {
        let p = RetryPolicy::default();
        assert_eq!(
            dispose(&failed(), 2, &p),
            Disposition::Retry {
                delay: Duration::from_secs(6),
                next_attempt: 3,
                error: "boom".into()
            }
        );
        assert_eq!(
            dispose(&failed(), 5, &p),
            Disposition::DeadLetter(DeadLetterReason::RetriesExhausted {
                attempts: 5,
                last_error: "boom".into()
            })
        );
    }

    #[test]
    fn unkeyable_goes_to_dead_letter_and_store_errors_redeliver() {
        let p = RetryPolicy::default();
        let poison: Result<Outcome<&str>, _> = Err(EngineError::Key(KeyError::Empty));
        assert!(matches!(
            dispose(&poison, 1, &p),
            Disposition::DeadLetter(DeadLetterReason::Unkeyable(_))
        ));
        let down: Result<Outcome<&str>, _> =
            Err(EngineError::Store(StoreError::Config("x".into())));
        assert!(matches!(
            dispose(&down, 1, &p),
            Disposition::Redeliver { .. }
        ));
    }
}
