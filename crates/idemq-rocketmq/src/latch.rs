//! How a blocked listener call learns that its messages are settled.
//!
//! The client calls a listener on one of its blocking threads and takes the returned status
//! as the fate of the whole call. The listener hands its messages to the async runtime and
//! waits here until each one is settled (or dropped unsettled), or the session closes.

use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::Duration;

/// How one message of a listener call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settled {
    /// Acknowledged, or moved (a retry or dead-letter copy is stored): the call may commit it.
    Done,
    /// To be offered again by the client itself after `delay` (the orderly listener suspends
    /// its queue).
    Again(Duration),
    /// Dropped unsettled (its handler was aborted, or its copy could not be stored).
    Lost,
}

/// What the listener call returns, once every message is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Every message is done: commit the call.
    Commit,
    /// Offer the call's messages again after this delay (orderly), done ones included: they
    /// are consumed duplicates by then.
    Again(Duration),
    /// Something was lost, or the session closed: let the broker redeliver the call.
    Redeliver,
}

struct State {
    remaining: usize,
    verdict: Verdict,
    closed: bool,
}

/// One listener call's messages.
pub(crate) struct Latch {
    state: Mutex<State>,
    settled: Condvar,
}

impl Latch {
    fn new(n: usize) -> Self {
        Self {
            state: Mutex::new(State {
                remaining: n,
                verdict: Verdict::Commit,
                closed: false,
            }),
            settled: Condvar::new(),
        }
    }

    /// Records how one message ended; false when the call was already answered (the
    /// session closed), so the broker redelivers the message whatever was recorded.
    pub(crate) fn settle(&self, how: Settled) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.remaining = s.remaining.saturating_sub(1);
        s.verdict = match (s.verdict, how) {
            (Verdict::Redeliver, _) | (_, Settled::Lost) => Verdict::Redeliver,
            (Verdict::Again(a), Settled::Again(b)) => Verdict::Again(a.max(b)),
            (Verdict::Again(a), Settled::Done) | (Verdict::Commit, Settled::Again(a)) => {
                Verdict::Again(a)
            }
            (Verdict::Commit, Settled::Done) => Verdict::Commit,
        };
        if s.remaining == 0 {
            self.settled.notify_all();
        }
        !s.closed
    }

    /// True once the call was answered because the session closed.
    pub(crate) fn is_closed(&self) -> bool {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).closed
    }

    fn close(&self) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.closed = true;
        self.settled.notify_all();
    }

    /// Blocks the calling (blocking-lane) thread until every message is settled or the
    /// session closes.
    pub(crate) fn wait(&self) -> Verdict {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        while s.remaining > 0 && !s.closed {
            s = self.settled.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        if s.remaining > 0 {
            Verdict::Redeliver
        } else {
            s.verdict
        }
    }
}

/// One message's place in its listener call: settled once, and as lost if dropped
/// unsettled, wherever it was dropped (a handler task, or a copy task that never ran).
pub(crate) struct Slot {
    latch: Arc<Latch>,
    settled: bool,
}

impl Slot {
    pub(crate) fn new(latch: Arc<Latch>) -> Self {
        Self {
            latch,
            settled: false,
        }
    }

    /// Records how the message ended; false when the call was answered already.
    pub(crate) fn settle(mut self, how: Settled) -> bool {
        self.settled = true;
        self.latch.settle(how)
    }

    /// True once the call was answered because the session closed.
    pub(crate) fn is_closed(&self) -> bool {
        self.latch.is_closed()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if !self.settled {
            self.latch.settle(Settled::Lost);
        }
    }
}

/// Every open listener call of one session, so closing the session releases them all.
#[derive(Default)]
pub(crate) struct Calls {
    open: Mutex<Vec<Weak<Latch>>>,
    closed: std::sync::atomic::AtomicBool,
    notify: tokio::sync::Notify,
}

impl Calls {
    /// A latch for a call of `n` messages; `None` once the session is closed.
    pub(crate) fn begin(&self, n: usize) -> Option<Arc<Latch>> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if self.is_closed() {
            return None;
        }
        open.retain(|l| l.strong_count() > 0);
        let latch = Arc::new(Latch::new(n));
        open.push(Arc::downgrade(&latch));
        Some(latch)
    }

    /// Closes the session: every waiting call returns at once, later calls are refused.
    pub(crate) fn close(&self) {
        let open = {
            let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
            self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
            std::mem::take(&mut *open)
        };
        for latch in open.iter().filter_map(Weak::upgrade) {
            latch.close();
        }
        self.notify.notify_waiters();
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Resolves once the session is closed.
    pub(crate) async fn closed(&self) {
        loop {
            let notified = self.notify.notified();
            if self.is_closed() {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_commits_only_when_every_message_is_done() {
        let calls = Calls::default();
        let latch = calls.begin(2).unwrap();
        latch.settle(Settled::Done);
        latch.settle(Settled::Done);
        assert_eq!(latch.wait(), Verdict::Commit);
    }

    #[test]
    fn one_lost_message_redelivers_the_call() {
        let calls = Calls::default();
        let latch = calls.begin(3).unwrap();
        latch.settle(Settled::Again(Duration::from_secs(1)));
        latch.settle(Settled::Lost);
        latch.settle(Settled::Done);
        assert_eq!(latch.wait(), Verdict::Redeliver);
    }

    #[test]
    fn again_waits_for_the_longest_delay() {
        let calls = Calls::default();
        let latch = calls.begin(2).unwrap();
        latch.settle(Settled::Again(Duration::from_secs(1)));
        latch.settle(Settled::Again(Duration::from_secs(3)));
        assert_eq!(latch.wait(), Verdict::Again(Duration::from_secs(3)));
    }

    #[test]
    fn a_dropped_slot_is_lost() {
        let calls = Calls::default();
        let latch = calls.begin(2).unwrap();
        assert!(Slot::new(latch.clone()).settle(Settled::Done));
        drop(Slot::new(latch.clone()));
        assert_eq!(latch.wait(), Verdict::Redeliver);
    }

    #[test]
    fn closing_releases_a_waiting_call_and_refuses_new_ones() {
        let calls = Arc::new(Calls::default());
        let latch = calls.begin(1).unwrap();
        let waiter = std::thread::spawn(move || latch.wait());
        calls.close();
        assert_eq!(waiter.join().unwrap(), Verdict::Redeliver);
        assert!(calls.begin(1).is_none());
    }
}
