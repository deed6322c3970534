//! The contract every broker adapter follows.
//!
//! An adapter turns a broker delivery into a [`Delivery`], runs it through the engine with
//! [`process`], and settles it the one way every broker must: acknowledge what is done,
//! redeliver what is in flight elsewhere, retry a failed handler with backoff, and
//! dead-letter, with a reason, what can never succeed. Brokers differ only in how they
//! carry out each [`Disposition`].

mod delivery;
mod disposition;
mod retry;

pub use delivery::{process, settle, Delivery, HandlerFuture};
pub use disposition::{dispose, DeadLetterReason, Disposition};
pub use retry::RetryPolicy;
