//! What a check-back answers: the rule from the log's row and the message's age, kept
//! apart from the I/O so it can be read (and tested) on its own.

use std::time::Duration;

use idemq_sql::TxState;
use rocketmq_client_rust::LocalTransactionState;
use tokio::sync::watch;

/// The next step of a check-back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Answer this.
    Answer(LocalTransactionState),
    /// No row past the grace period: settle the id as rolled back unless a row appears
    /// (the log waits for a local transaction still holding it), and answer what it holds.
    Resolve,
}

/// Decides a check-back from the row found for the id and the message's age.
///
/// A row answers for itself: committed is delivered, rolled back dropped, whatever the
/// age; this is also what makes a check-back after a commit harmless (it commits again,
/// and the dedup consumer absorbs the copy). No row is in doubt while the message is
/// younger than `grace`, since its local transaction may still be running; after that the
/// log settles it.
pub(crate) fn decide(found: Option<TxState>, age: Duration, grace: Duration) -> Step {
    match found {
        Some(TxState::Committed) => Step::Answer(LocalTransactionState::CommitMessage),
        Some(TxState::RolledBack) => Step::Answer(LocalTransactionState::RollbackMessage),
        None if age < grace => Step::Answer(LocalTransactionState::Unknown),
        None => Step::Resolve,
    }
}

/// What the producer's check-backs answered so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CheckCounts {
    /// Answered committed (the message is delivered).
    pub committed: u64,
    /// Answered rolled back (the message is dropped).
    pub rolled_back: u64,
    /// Answered unknown: in doubt within the grace period, the log unreachable, or no
    /// answer within the check timeout. The broker asks again.
    pub unknown: u64,
    /// Ids the check-backs settled as rolled back (absent past the grace period).
    pub settled: u64,
}

/// The counts, watchable: a test or an operator can wait for a check-back to happen.
#[derive(Debug)]
pub(crate) struct Counters(watch::Sender<CheckCounts>);

impl Default for Counters {
    fn default() -> Self {
        Self(watch::Sender::new(CheckCounts::default()))
    }
}

impl Counters {
    pub(crate) fn answered(&self, state: LocalTransactionState) {
        self.0.send_modify(|c| match state {
            LocalTransactionState::CommitMessage => c.committed += 1,
            LocalTransactionState::RollbackMessage => c.rolled_back += 1,
            LocalTransactionState::Unknown => c.unknown += 1,
        });
    }

    pub(crate) fn settled(&self) {
        self.0.send_modify(|c| c.settled += 1);
    }

    pub(crate) fn snapshot(&self) -> CheckCounts {
        *self.0.borrow()
    }

    /// Waits until the counts satisfy `f`, and returns them then.
    pub(crate) async fn wait_until(&self, f: impl Fn(&CheckCounts) -> bool) -> CheckCounts {
        let mut rx = self.0.subscribe();
        // The sender lives as long as `self`, so the wait only ends when `f` holds.
        let c = *rx
            .wait_for(|c| f(c))
            .await
            .expect("the counts outlive their waiters");
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use LocalTransactionState::{CommitMessage, RollbackMessage, Unknown};

    const GRACE: Duration = Duration::from_secs(60);

    #[test]
    fn a_row_answers_for_itself_at_any_age() {
        for age in [Duration::ZERO, GRACE, GRACE * 100] {
            assert_eq!(
                decide(Some(TxState::Committed), age, GRACE),
                Step::Answer(CommitMessage)
            );
            assert_eq!(
                decide(Some(TxState::RolledBack), age, GRACE),
                Step::Answer(RollbackMessage)
            );
        }
    }

    #[test]
    fn no_row_is_in_doubt_within_the_grace_period_and_settled_after() {
        assert_eq!(decide(None, Duration::ZERO, GRACE), Step::Answer(Unknown));
        assert_eq!(
            decide(None, GRACE - Duration::from_millis(1), GRACE),
            Step::Answer(Unknown)
        );
        assert_eq!(decide(None, GRACE, GRACE), Step::Resolve);
        assert_eq!(decide(None, GRACE * 2, GRACE), Step::Resolve);
    }

    #[test]
    fn counts_add_up_per_answer() {
        let c = Counters::default();
        for s in [CommitMessage, CommitMessage, RollbackMessage, Unknown] {
            c.answered(s);
        }
        c.settled();
        assert_eq!(
            c.snapshot(),
            CheckCounts {
                committed: 2,
                rolled_back: 1,
                unknown: 1,
                settled: 1
            }
        );
    }
}
