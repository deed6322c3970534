//! Property tests of the ordered-commit tracker against plain models.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::time::Duration;

use idemq_consumer::tracker::{CommitTracker, KeyedQueue, PartitionLog, Settled, Ticket};
use proptest::prelude::*;
use proptest::sample::Index;

const PARTITIONS: u8 = 3;

/// Increasing offsets with gaps of 1 to 4, as compacted topics and transaction markers
/// leave them.
fn offsets(max: usize) -> impl Strategy<Value = Vec<i64>> {
    (0i64..5, prop::collection::vec(1i64..5, 1..max)).prop_map(|(start, gaps)| {
        gaps.iter()
            .scan(start, |offset, gap| {
                let this = *offset;
                *offset += gap;
                Some(this)
            })
            .collect()
    })
}

/// One partition's current assignment, the slow and obvious way.
#[derive(Default)]
struct Model {
    tracked: Vec<i64>,
    settled: Vec<bool>,
    tickets: Vec<Ticket<u8>>,
}

impl Model {
    /// One past the last record of the longest settled prefix.
    fn committable(&self) -> Option<i64> {
        let prefix = self.settled.iter().take_while(|&&settled| settled).count();
        prefix.checked_sub(1).map(|last| self.tracked[last] + 1)
    }

    fn unsettled(&self) -> Vec<i64> {
        self.tracked
            .iter()
            .zip(&self.settled)
            .filter(|(_, &settled)| !settled)
            .map(|(&offset, _)| offset)
            .collect()
    }
}

#[derive(Debug, Clone)]
enum Op {
    Track(u8),
    Settle(u8, Index),
    SettleStale(Index),
    Revoke(u8),
    Take,
}

fn op() -> impl Strategy<Value = Op> {
    let partition = 0..PARTITIONS;
    prop_oneof![
        4 => partition.clone().prop_map(Op::Track),
        4 => (partition.clone(), any::<Index>()).prop_map(|(p, i)| Op::Settle(p, i)),
        1 => any::<Index>().prop_map(Op::SettleStale),
        1 => partition.prop_map(Op::Revoke),
        1 => Just(Op::Take),
    ]
}

fn check(tracker: &CommitTracker<u8>, models: &[Model]) -> Result<(), TestCaseError> {
    for (p, model) in (0..PARTITIONS).zip(models) {
        let committable = tracker.committable(&p);
        prop_assert_eq!(committable, model.committable(), "committable of {}", p);
        let unsettled = model.unsettled();
        prop_assert_eq!(tracker.pending(&p), unsettled.len());
        if let (Some(committable), Some(&first)) = (committable, unsettled.first()) {
            prop_assert!(
                committable <= first,
                "{} passes unsettled {}",
                committable,
                first
            );
        }
    }
    let in_flight: usize = models.iter().map(|model| model.unsettled().len()).sum();
    prop_assert_eq!(tracker.in_flight(), in_flight);
    Ok(())
}

proptest! {
    #[test]
    fn settling_in_any_order_matches_the_model(
        (offsets, order) in offsets(60).prop_flat_map(|offsets| {
            let order = Just((0..offsets.len()).collect::<Vec<_>>()).prop_shuffle();
            (Just(offsets), order)
        })
    ) {
        let mut tracker = CommitTracker::new();
        let mut model = Model::default();
        for &offset in &offsets {
            model.tickets.push(tracker.track(0u8, offset).unwrap());
            model.tracked.push(offset);
            model.settled.push(false);
        }
        for i in order {
            let before = model.committable();
            model.settled[i] = true;
            let after = model.committable();
            prop_assert!(after >= before, "committable went back");
            let expected = match after {
                Some(offset) if after != before => Settled::Moved(offset),
                _ => Settled::Held,
            };
            prop_assert_eq!(tracker.settle(&model.tickets[i]), expected);
            check(&tracker, std::slice::from_ref(&model))?;
            prop_assert_eq!(tracker.settle(&model.tickets[i]), Settled::Unknown);
        }
        prop_assert_eq!(tracker.committable(&0), Some(offsets.last().unwrap() + 1));
        prop_assert_eq!(tracker.in_flight(), 0);
    }

    #[test]
    fn interleaved_partitions_and_revocations_match_the_model(
        streams in prop::collection::vec(offsets(40), PARTITIONS as usize),
        ops in prop::collection::vec(op(), 1..200),
    ) {
        let mut tracker = CommitTracker::new();
        let mut models: Vec<Model> = (0..PARTITIONS).map(|_| Model::default()).collect();
        // The next offset of each stream to receive.
        let mut next = vec![0usize; PARTITIONS as usize];
        let mut stale: Vec<Ticket<u8>> = Vec::new();
        let mut taken: BTreeMap<u8, i64> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Track(p) => {
                    let (stream, model) = (&streams[p as usize], &mut models[p as usize]);
                    if let Some(&offset) = stream.get(next[p as usize]) {
                        next[p as usize] += 1;
                        model.tickets.push(tracker.track(p, offset).unwrap());
                        model.tracked.push(offset);
                        model.settled.push(false);
                    }
                    if let Some(&last) = model.tracked.last() {
                        let err = tracker.track(p, last).unwrap_err();
                        prop_assert_eq!((err.offset, err.last), (last, last));
                    }
                }
                Op::Settle(p, i) => {
                    let model = &mut models[p as usize];
                    if model.tracked.is_empty() {
                        continue;
                    }
                    let i = i.index(model.tracked.len());
                    let before = model.committable();
                    let expected = if model.settled[i] {
                        Settled::Unknown
                    } else {
                        model.settled[i] = true;
                        match model.committable() {
                            Some(offset) if model.committable() != before => {
                                Settled::Moved(offset)
                            }
                            _ => Settled::Held,
                        }
                    };
                    prop_assert!(model.committable() >= before, "committable went back");
                    prop_assert_eq!(tracker.settle(&model.tickets[i]), expected);
                }
                Op::SettleStale(i) => {
                    if !stale.is_empty() {
                        let ticket = &stale[i.index(stale.len())];
                        prop_assert_eq!(tracker.settle(ticket), Settled::Unknown);
                    }
                }
                Op::Revoke(p) => {
                    let model = std::mem::take(&mut models[p as usize]);
                    let revoked = tracker.revoke(&p);
                    prop_assert_eq!(revoked.committable, model.committable());
                    prop_assert_eq!(&revoked.abandoned, &model.unsettled());
                    taken.remove(&p);
                    // The next owner resumes from the committed offset, so the same
                    // offsets come again while the old tickets are still about.
                    if let Some(&first) = model.tracked.first() {
                        let resume = model.committable().unwrap_or(first);
                        next[p as usize] = streams[p as usize].partition_point(|&o| o < resume);
                    }
                    stale.extend(model.tickets);
                }
                Op::Take => {
                    let expected: Vec<(u8, i64)> = (0..PARTITIONS)
                        .filter_map(|p| {
                            let committable = models[p as usize].committable()?;
                            (taken.get(&p) != Some(&committable)).then_some((p, committable))
                        })
                        .collect();
                    prop_assert_eq!(tracker.take_commits(), expected.clone());
                    taken.extend(expected);
                }
            }
            check(&tracker, &models)?;
        }
        // Settle what is left, last first: each partition ends one past its last record.
        for (p, model) in (0..PARTITIONS).zip(&mut models) {
            for i in (0..model.tracked.len()).rev() {
                if !model.settled[i] {
                    model.settled[i] = true;
                    tracker.settle(&model.tickets[i]);
                }
            }
            let end = model.tracked.last().map(|last| last + 1);
            prop_assert_eq!(tracker.committable(&p), end);
        }
        check(&tracker, &models)?;
    }

    #[test]
    fn keyed_queue_runs_each_key_alone_in_arrival_order(
        ops in prop::collection::vec((0u8..8, 0u8..4), 1..200),
    ) {
        const KEYS: u8 = 4;
        let mut queue = KeyedQueue::new();
        let mut running: Vec<Option<u32>> = vec![None; KEYS as usize];
        let mut held: Vec<VecDeque<u32>> = vec![VecDeque::new(); KEYS as usize];
        let mut admitted: Vec<Vec<u32>> = vec![Vec::new(); KEYS as usize];
        let mut started: Vec<Vec<u32>> = vec![Vec::new(); KEYS as usize];
        let mut removed: HashSet<u32> = HashSet::new();
        let mut next_id = 0u32;
        for (kind, key) in ops {
            let k = key as usize;
            match kind {
                0..=3 => {
                    let id = next_id;
                    next_id += 1;
                    admitted[k].push(id);
                    match queue.admit(key, id) {
                        Some(run) => {
                            prop_assert_eq!(run, id);
                            prop_assert!(running[k].is_none(), "two records of {} at once", key);
                            running[k] = Some(id);
                            started[k].push(id);
                        }
                        None => {
                            prop_assert!(running[k].is_some(), "{} held behind nothing", id);
                            held[k].push_back(id);
                        }
                    }
                }
                // Finish, also of a key with nothing running.
                4..=6 => {
                    let next = queue.finish(&key);
                    prop_assert_eq!(next, held[k].pop_front());
                    running[k] = next;
                    started[k].extend(next);
                }
                // Drop the held records of one parity, as of a revoked partition.
                _ => {
                    let parity = next_id % 2;
                    let mut out = queue.remove_held(|id| id % 2 == parity);
                    out.sort_unstable();
                    let mut expected: Vec<u32> = Vec::new();
                    for waiting in &mut held {
                        expected.extend(waiting.iter().filter(|&&id| id % 2 == parity));
                        waiting.retain(|id| id % 2 != parity);
                    }
                    expected.sort_unstable();
                    prop_assert_eq!(&out, &expected);
                    removed.extend(out);
                }
            }
            for key in 0..KEYS {
                prop_assert_eq!(queue.is_running(&key), running[key as usize].is_some());
            }
            let running_keys = running.iter().flatten().count();
            prop_assert_eq!(queue.running(), running_keys);
            prop_assert_eq!(queue.held(), held.iter().map(VecDeque::len).sum::<usize>());
        }
        // Finish everything: each record not dropped ran once, in arrival order of its key.
        for key in 0..KEYS {
            while let Some(next) = queue.finish(&key) {
                started[key as usize].push(next);
            }
            let expected: Vec<u32> = admitted[key as usize]
                .iter()
                .copied()
                .filter(|id| !removed.contains(id))
                .collect();
            prop_assert_eq!(&started[key as usize], &expected);
        }
        prop_assert_eq!((queue.running(), queue.held()), (0, 0));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Each record settles after its handler's time; revoking with a timeout between
    /// those times abandons exactly the slower ones.
    #[test]
    fn revoke_abandons_exactly_the_records_slower_than_the_timeout(
        (offsets, times) in offsets(30).prop_flat_map(|offsets| {
            let times = prop::collection::vec(prop::option::weighted(0.9, 0u64..20), offsets.len());
            (Just(offsets), times)
        }),
        timeout in 0u64..20,
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(async {
            let log = PartitionLog::new();
            let mut model = Model::default();
            for (&offset, &time) in offsets.iter().zip(&times) {
                let ticket = log.track(0u8, offset).unwrap();
                model.tracked.push(offset);
                // Settled at an even millisecond, the timeout is odd: never a tie. A
                // handler that never ends has no time.
                model.settled.push(time.is_some_and(|time| 2 * time < 2 * timeout + 1));
                if let Some(time) = time {
                    let handler = log.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(2 * time)).await;
                        handler.settle(&ticket);
                    });
                }
            }
            let revoked = log.revoke(&0, Duration::from_millis(2 * timeout + 1)).await;
            prop_assert_eq!(revoked.committable, model.committable());
            prop_assert_eq!(revoked.abandoned, model.unsettled());
            prop_assert_eq!(log.in_flight(), 0);
            Ok(())
        })?;
    }
}
