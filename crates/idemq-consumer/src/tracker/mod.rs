//! The ordered-commit tracker for partitioned logs (Kafka partitions, RocketMQ queues).
//!
//! These brokers take one committed offset per partition, not an ack per message, so a
//! record may only be committed past once every record before it is settled, whatever
//! order the handlers finish in.
//!
//! - [`CommitTracker`] follows the records of each partition from [`track`] to [`settle`]
//!   and says which offset may be committed.
//! - [`KeyedQueue`] runs the records of one ordering key one at a time, in arrival order.
//! - [`PartitionLog`] is a shareable, async [`CommitTracker`] whose [`revoke`] drains a
//!   partition's in-flight records (or gives up on them) when a rebalance takes it away.
//!
//! [`track`]: CommitTracker::track
//! [`settle`]: CommitTracker::settle
//! [`revoke`]: PartitionLog::revoke

mod commit;
mod keyed;
mod log;

pub use commit::{CommitTracker, OutOfOrder, Revoked, Settled, Ticket};
pub use keyed::KeyedQueue;
pub use log::PartitionLog;
