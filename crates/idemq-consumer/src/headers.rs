//! The header (or user property) names every adapter writes, so an operator reads a retried
//! or dead-lettered message the same way on every broker.

/// The attempt number of a retried message, from 1 (absent on the first delivery).
pub const ATTEMPT: &str = "x-idemq-attempt";
/// The last handler error of a retried or dead-lettered message.
pub const ERROR: &str = "x-idemq-error";
/// Why a message was dead-lettered: `unkeyable`, `undecodable`, `conflict` or
/// `retries-exhausted` (see [`idemq_core::adapter::DeadLetterReason::kind`]).
pub const REASON: &str = "x-idemq-reason";
/// Attempts made before a message was dead-lettered.
pub const ATTEMPTS: &str = "x-idemq-attempts";
/// The queue or topic a dead-lettered message came from.
pub const ORIGINAL_QUEUE: &str = "x-idemq-original-queue";
/// Unix milliseconds of the first handler failure.
pub const FIRST_FAILURE: &str = "x-idemq-first-failure";
/// Unix milliseconds of the last handler failure (or of the dead-lettering).
pub const LAST_FAILURE: &str = "x-idemq-last-failure";
/// The fingerprint (64 hex digits) the record holds, on a message dead-lettered as a
/// `conflict`.
pub const EXISTING_FINGERPRINT: &str = "x-idemq-existing-fingerprint";
/// The fingerprint of the refused payload, on a message dead-lettered as a `conflict`.
pub const INCOMING_FINGERPRINT: &str = "x-idemq-incoming-fingerprint";
