//! The consumer's rebalance callbacks: a revoked partition commits what is settled and
//! abandons the rest to its next owner.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use idemq_consumer::tracker::PartitionLog;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::delivery::Part;

/// The context of a session's consumer.
pub(crate) struct GroupContext {
    pub(crate) log: PartitionLog<Part>,
    /// Set when the session is torn down without a drain (a kill, a lost connection): a
    /// revocation then commits nothing, as a crashed member would not.
    pub(crate) abandoned: Arc<AtomicBool>,
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    /// Runs on the polling thread before partitions go: it cannot wait for handlers, so
    /// it commits each partition up to its last settled record and forgets the records in
    /// flight. Their handlers finish (their settles count for nothing) and the partition's
    /// next owner receives them again, where the engine makes the finished ones duplicates.
    fn pre_rebalance(&self, base: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(revoked) = rebalance else {
            return;
        };
        let commit = !self.abandoned.load(Ordering::SeqCst);
        let mut commits = TopicPartitionList::new();
        for p in revoked.elements() {
            let gone = self.log.revoke_now(&(p.topic().to_owned(), p.partition()));
            if let Some(offset) = gone.committable {
                let _ =
                    commits.add_partition_offset(p.topic(), p.partition(), Offset::Offset(offset));
            }
            if !gone.abandoned.is_empty() {
                tracing::debug!(
                    topic = p.topic(),
                    partition = p.partition(),
                    abandoned = gone.abandoned.len(),
                    "partition revoked with records in flight: its next owner gets them again"
                );
            }
        }
        if commit && commits.count() > 0 {
            if let Err(e) = base.commit(&commits, CommitMode::Sync) {
                tracing::warn!(error = %e, "commit of revoked partitions failed: their next owner resumes earlier");
            }
        }
    }
}

/// Commits every partition whose committable offset moved.
pub(crate) fn commit_settled<C: Consumer<GroupContext>>(
    consumer: &C,
    log: &PartitionLog<Part>,
    mode: CommitMode,
) {
    let moved = log.take_commits();
    if moved.is_empty() {
        return;
    }
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), offset) in &moved {
        let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset));
    }
    if let Err(e) = consumer.commit(&tpl, mode) {
        tracing::warn!(error = %e, "offset commit failed: the records after the last commit come again");
    }
}
