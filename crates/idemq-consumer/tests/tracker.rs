//! Plain tests of the ordered-commit tracker, one behaviour each.

use std::time::Duration;

use idemq_consumer::tracker::{
    CommitTracker, KeyedQueue, OutOfOrder, PartitionLog, Revoked, Settled,
};
use tokio::time::Instant;

#[test]
fn nothing_is_committable_before_a_record_settles() {
    let mut tracker = CommitTracker::new();
    assert_eq!(tracker.committable(&0), None);
    tracker.track(0, 10).unwrap();
    assert_eq!(tracker.committable(&0), None);
    assert_eq!(tracker.pending(&0), 1);
}

#[test]
fn committable_is_one_past_the_settled_prefix() {
    let mut tracker = CommitTracker::new();
    let a = tracker.track(0, 10).unwrap();
    let b = tracker.track(0, 11).unwrap();
    assert_eq!(tracker.settle(&a), Settled::Moved(11));
    assert_eq!(tracker.settle(&b), Settled::Moved(12));
    assert_eq!(tracker.committable(&0), Some(12));
}

#[test]
fn committable_never_passes_an_unsettled_record() {
    let mut tracker = CommitTracker::new();
    let a = tracker.track(0, 1).unwrap();
    let b = tracker.track(0, 2).unwrap();
    let c = tracker.track(0, 3).unwrap();
    assert_eq!(tracker.settle(&c), Settled::Held);
    assert_eq!(tracker.settle(&a), Settled::Moved(2));
    assert_eq!(tracker.committable(&0), Some(2));
    assert_eq!(tracker.settle(&b), Settled::Moved(4));
}

#[test]
fn gaps_in_offsets_do_not_hold_the_commit_back() {
    let mut tracker = CommitTracker::new();
    let a = tracker.track(0, 5).unwrap();
    let b = tracker.track(0, 9).unwrap();
    let c = tracker.track(0, 20).unwrap();
    assert_eq!(tracker.settle(&a), Settled::Moved(6));
    assert_eq!(tracker.settle(&c), Settled::Held);
    assert_eq!(tracker.settle(&b), Settled::Moved(21));
}

#[test]
fn tracking_an_offset_not_past_the_last_fails() {
    let mut tracker = CommitTracker::new();
    tracker.track(0, 7).unwrap();
    assert_eq!(tracker.track(0, 7), Err(OutOfOrder { offset: 7, last: 7 }));
    assert_eq!(tracker.track(0, 3), Err(OutOfOrder { offset: 3, last: 7 }));
    assert_eq!(tracker.pending(&0), 1);
    assert_eq!(tracker.in_flight(), 1);
}

#[test]
fn settling_twice_is_reported_and_harmless() {
    let mut tracker = CommitTracker::new();
    let a = tracker.track(0, 1).unwrap();
    tracker.track(0, 2).unwrap();
    assert_eq!(tracker.settle(&a), Settled::Moved(2));
    assert_eq!(tracker.settle(&a), Settled::Unknown);
    assert_eq!(tracker.committable(&0), Some(2));
    assert_eq!(tracker.in_flight(), 1);
}

#[test]
fn partitions_are_independent() {
    let mut tracker = CommitTracker::new();
    let a = tracker.track("a", 1).unwrap();
    let b = tracker.track("b", 1).unwrap();
    tracker.track("a", 2).unwrap();
    assert_eq!(tracker.settle(&b), Settled::Moved(2));
    assert_eq!(tracker.committable(&"a"), None);
    assert_eq!(tracker.settle(&a), Settled::Moved(2));
    assert_eq!(tracker.pending(&"a"), 1);
    assert_eq!(tracker.pending(&"b"), 0);
    assert_eq!(tracker.in_flight(), 1);
}

#[test]
fn take_commits_returns_each_moved_partition_once() {
    let mut tracker = CommitTracker::new();
    let a1 = tracker.track(1, 1).unwrap();
    let a2 = tracker.track(1, 2).unwrap();
    let b1 = tracker.track(2, 1).unwrap();
    let c1 = tracker.track(3, 1).unwrap();
    tracker.track(3, 2).unwrap();
    tracker.settle(&a1);
    tracker.settle(&a2);
    tracker.settle(&b1);
    assert_eq!(tracker.take_commits(), vec![(1, 3), (2, 2)]);
    assert_eq!(tracker.take_commits(), vec![]);
    tracker.settle(&c1);
    assert_eq!(tracker.take_commits(), vec![(3, 2)]);
}

#[test]
fn revoke_reports_committable_and_abandoned_and_forgets() {
    let mut tracker = CommitTracker::new();
    let a = tracker.track(0, 1).unwrap();
    let b = tracker.track(0, 2).unwrap();
    tracker.track(0, 4).unwrap();
    tracker.settle(&a);
    assert_eq!(
        tracker.revoke(&0),
        Revoked {
            committable: Some(2),
            abandoned: vec![2, 4],
        }
    );
    assert_eq!(tracker.in_flight(), 0);
    assert_eq!(tracker.committable(&0), None);
    assert_eq!(tracker.take_commits(), vec![]);
    assert_eq!(tracker.settle(&b), Settled::Unknown);
    assert_eq!(tracker.revoke(&0), Revoked::default());
}

#[test]
fn a_ticket_from_before_a_revoke_does_not_settle_the_next_assignment() {
    let mut tracker = CommitTracker::new();
    let old = tracker.track(0, 5).unwrap();
    tracker.revoke(&0);
    let new = tracker.track(0, 5).unwrap();
    assert_eq!(tracker.settle(&old), Settled::Unknown);
    assert_eq!(tracker.pending(&0), 1);
    assert_eq!(tracker.settle(&new), Settled::Moved(6));
}

#[test]
fn a_ticket_is_current_until_settled_or_revoked() {
    let mut tracker = CommitTracker::new();
    let a = tracker.track(0, 1).unwrap();
    let b = tracker.track(0, 2).unwrap();
    assert!(tracker.is_current(&a) && tracker.is_current(&b));
    tracker.settle(&a);
    assert!(!tracker.is_current(&a));
    tracker.revoke(&0);
    assert!(!tracker.is_current(&b));
    let again = tracker.track(0, 2).unwrap();
    assert!(tracker.is_current(&again));
    assert!(
        !tracker.is_current(&b),
        "an old assignment's ticket stays stale"
    );
}

#[test]
fn keyed_queue_runs_one_record_per_key_in_arrival_order() {
    let mut queue = KeyedQueue::new();
    assert_eq!(queue.admit("k", 1), Some(1));
    assert_eq!(queue.admit("k", 2), None);
    assert_eq!(queue.admit("k", 3), None);
    assert_eq!(queue.held(), 2);
    assert_eq!(queue.finish(&"k"), Some(2));
    assert_eq!(queue.finish(&"k"), Some(3));
    assert_eq!(queue.finish(&"k"), None);
    assert!(!queue.is_running(&"k"));
    assert_eq!(queue.admit("k", 4), Some(4));
}

#[test]
fn keyed_queue_never_holds_one_key_behind_another() {
    let mut queue = KeyedQueue::new();
    assert_eq!(queue.admit("a", 1), Some(1));
    assert_eq!(queue.admit("a", 2), None);
    assert_eq!(queue.admit("b", 3), Some(3));
    assert_eq!(queue.running(), 2);
    assert_eq!(queue.finish(&"b"), None);
    assert_eq!(queue.finish(&"c"), None);
    assert_eq!(queue.running(), 1);
}

#[test]
fn keyed_queue_remove_held_keeps_the_rest_in_order() {
    let mut queue = KeyedQueue::new();
    queue.admit("a", (0, 1));
    queue.admit("a", (1, 2));
    queue.admit("a", (0, 3));
    queue.admit("a", (1, 4));
    assert_eq!(
        queue.remove_held(|&(partition, _)| partition == 1),
        vec![(1, 2), (1, 4)]
    );
    assert_eq!(queue.held(), 1);
    assert_eq!(queue.finish(&"a"), Some((0, 3)));
    assert_eq!(queue.finish(&"a"), None);
}

#[tokio::test(start_paused = true)]
async fn revoke_drains_work_that_settles_before_the_timeout() {
    let log = PartitionLog::new();
    let tickets: Vec<_> = (0..3).map(|offset| log.track(0, offset).unwrap()).collect();
    let handlers = log.clone();
    tokio::spawn(async move {
        for ticket in tickets.iter().rev() {
            tokio::time::sleep(Duration::from_secs(1)).await;
            handlers.settle(ticket);
        }
    });
    let start = Instant::now();
    let revoked = log.revoke(&0, Duration::from_secs(30)).await;
    assert_eq!(start.elapsed(), Duration::from_secs(3));
    assert_eq!(
        revoked,
        Revoked {
            committable: Some(3),
            abandoned: vec![],
        }
    );
    assert_eq!(log.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn revoke_abandons_work_still_in_flight_at_the_timeout() {
    let log = PartitionLog::new();
    let first = log.track(0, 10).unwrap();
    let slow = log.track(0, 11).unwrap();
    log.track(0, 12).unwrap();
    log.settle(&first);
    let handler = log.clone();
    let late = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(60)).await;
        handler.settle(&slow)
    });
    let start = Instant::now();
    let revoked = log.revoke(&0, Duration::from_secs(5)).await;
    assert_eq!(start.elapsed(), Duration::from_secs(5));
    assert_eq!(
        revoked,
        Revoked {
            committable: Some(11),
            abandoned: vec![11, 12],
        }
    );
    assert_eq!(late.await.unwrap(), Settled::Unknown);
    assert_eq!(log.committable(&0), None);
    assert_eq!(log.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn revoke_waits_only_for_its_own_partition() {
    let log = PartitionLog::new();
    let a = log.track("a", 1).unwrap();
    log.track("b", 1).unwrap();
    let handler = log.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(10)).await;
        handler.settle(&a);
    });
    let start = Instant::now();
    let revoked = log.revoke(&"a", Duration::from_secs(5)).await;
    assert_eq!(start.elapsed(), Duration::from_millis(10));
    assert_eq!(revoked.committable, Some(2));
    assert_eq!(log.pending(&"b"), 1);
}

#[tokio::test(start_paused = true)]
async fn revoke_of_a_drained_or_unknown_partition_returns_at_once() {
    let log = PartitionLog::new();
    let a = log.track(0, 1).unwrap();
    log.settle(&a);
    let start = Instant::now();
    let revoked = log.revoke(&0, Duration::from_secs(5)).await;
    assert_eq!(revoked.committable, Some(2));
    assert_eq!(log.revoke(&9, Duration::MAX).await, Revoked::default());
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_drains_settles_from_other_threads() {
    let log = PartitionLog::new();
    let tickets: Vec<_> = (0..200)
        .map(|offset| log.track(0, offset).unwrap())
        .collect();
    for ticket in tickets {
        let handler = log.clone();
        tokio::spawn(async move {
            tokio::task::yield_now().await;
            handler.settle(&ticket);
        });
    }
    let revoked = log.revoke(&0, Duration::from_secs(30)).await;
    assert_eq!(
        revoked,
        Revoked {
            committable: Some(200),
            abandoned: vec![],
        }
    );
}
