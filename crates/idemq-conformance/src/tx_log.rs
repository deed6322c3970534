//! The rules of a [`TxLog`] (the transaction log of transactional messages), as tests every
//! implementation runs.
//!
//! The suite knows no SQL: a store crate's test file gives a migrated log on a table the
//! suite names, and runs every rule with [`tx_log_conformance!`](crate::tx_log_conformance).
//! Each test has a fresh table of its own ([`fresh_table`]), so tests can share a server and
//! run in parallel.

use std::time::Duration;

use idemq_core::time::now_ms;
use idemq_core::StoreError;
use idemq_sql::{
    TableName, TxEntry, TxLog, TxLogError, TxState, MAX_TABLE_NAME, MAX_TX_FIELD, MAX_TX_ID,
};

/// How long a call waiting for another transaction is shown to be still waiting.
const STILL_BLOCKED: Duration = Duration::from_millis(300);

/// The bound on a call that must finish: far longer than any lock wait of a passing test.
const MUST_FINISH: Duration = Duration::from_secs(30);

/// A table name no other test uses: `idemq_txlog_<start of rule>_<random>`, valid and at
/// most [`MAX_TABLE_NAME`] characters.
pub fn fresh_table(rule: &str) -> String {
    let random = uuid::Uuid::new_v4().simple().to_string();
    let prefix = "idemq_txlog_";
    let room = MAX_TABLE_NAME - prefix.len() - 1 - 16;
    let rule: String = rule
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(room)
        .collect();
    let name = format!("{prefix}{rule}_{}", &random[..16]);
    TableName::new(name.as_str()).expect("a valid table name");
    name
}

fn entry(tx_id: &str) -> TxEntry {
    TxEntry::new(tx_id, Some(format!("order-{tx_id}")), "idemq-tx-topic").unwrap()
}

/// Records `entries` in one local transaction and commits it.
async fn commit<L: TxLog>(log: &L, entries: &[TxEntry]) {
    let mut tx = log.begin().await.unwrap();
    for e in entries {
        log.record(&mut *tx, e).await.unwrap();
    }
    tx.commit().await.unwrap();
}

fn assert_duplicate(r: Result<(), TxLogError>, tx_id: &str) {
    assert!(
        matches!(&r, Err(TxLogError::Duplicate(id)) if id == tx_id),
        "expected a duplicate of {tx_id:?}, got {r:?}"
    );
}

/// The row written first in a local transaction commits with it, and no other connection
/// sees it before.
pub async fn a_recorded_transaction_is_committed_with_it<L: TxLog>(log: L) {
    let e = entry("tx-commit");
    let mut tx = log.begin().await.unwrap();
    log.record(&mut *tx, &e).await.unwrap();
    assert_eq!(
        log.state(&e.tx_id).await.unwrap(),
        None,
        "another connection saw the row before the commit"
    );
    tx.commit().await.unwrap();
    assert_eq!(log.state(&e.tx_id).await.unwrap(), Some(TxState::Committed));
    assert_eq!(log.state("tx-never-sent").await.unwrap(), None);
}

/// A rolled back local transaction leaves no row; a check-back then settles it as rolled
/// back.
pub async fn a_rolled_back_transaction_leaves_no_row<L: TxLog>(log: L) {
    let e = entry("tx-rollback");
    let mut tx = log.begin().await.unwrap();
    log.record(&mut *tx, &e).await.unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(log.state(&e.tx_id).await.unwrap(), None);

    // A transaction dropped without a commit is rolled back too.
    let dropped = entry("tx-dropped");
    let mut tx = log.begin().await.unwrap();
    log.record(&mut *tx, &dropped).await.unwrap();
    drop(tx);
    assert_eq!(log.state(&dropped.tx_id).await.unwrap(), None);

    assert_eq!(log.resolve(&e).await.unwrap(), TxState::RolledBack);
    assert_eq!(
        log.state(&e.tx_id).await.unwrap(),
        Some(TxState::RolledBack)
    );
}

/// An id is recorded once: a second record, in a later transaction or the same one, is a
/// duplicate and the first row stays.
pub async fn a_second_record_of_one_id_is_refused<L: TxLog>(log: L) {
    let e = entry("tx-twice");
    commit(&log, std::slice::from_ref(&e)).await;
    let mut tx = log.begin().await.unwrap();
    assert_duplicate(log.record(&mut *tx, &e).await, &e.tx_id);
    tx.rollback().await.unwrap();
    assert_eq!(log.state(&e.tx_id).await.unwrap(), Some(TxState::Committed));

    let same = entry("tx-twice-in-one");
    let mut tx = log.begin().await.unwrap();
    log.record(&mut *tx, &same).await.unwrap();
    assert_duplicate(log.record(&mut *tx, &same).await, &same.tx_id);
    tx.rollback().await.unwrap();
    assert_eq!(log.state(&same.tx_id).await.unwrap(), None);
}

/// A check-back settles an id without a row as rolled back, and a local transaction that
/// comes later cannot record it any more: it can never commit after the message was dropped.
pub async fn resolve_settles_an_absent_id_as_rolled_back_and_fences_a_late_record<L: TxLog>(
    log: L,
) {
    let e = entry("tx-late");
    assert_eq!(log.resolve(&e).await.unwrap(), TxState::RolledBack);
    assert_eq!(
        log.state(&e.tx_id).await.unwrap(),
        Some(TxState::RolledBack)
    );
    // Settled once: a second check-back answers the same.
    assert_eq!(log.resolve(&e).await.unwrap(), TxState::RolledBack);

    let mut tx = log.begin().await.unwrap();
    assert_duplicate(log.record(&mut *tx, &e).await, &e.tx_id);
    tx.rollback().await.unwrap();
    assert_eq!(
        log.state(&e.tx_id).await.unwrap(),
        Some(TxState::RolledBack)
    );
}

/// A check-back after the local transaction committed answers committed and changes nothing.
pub async fn resolve_after_a_commit_answers_committed<L: TxLog>(log: L) {
    let e = entry("tx-done");
    commit(&log, std::slice::from_ref(&e)).await;
    assert_eq!(log.resolve(&e).await.unwrap(), TxState::Committed);
    assert_eq!(log.state(&e.tx_id).await.unwrap(), Some(TxState::Committed));
}

/// How the open transaction of [`resolve_waits`] ends.
enum End {
    Commit,
    Rollback,
}

/// Opens a local transaction holding the id's uncommitted row, starts a check-back's
/// `resolve`, shows it still waits, ends the transaction and returns what `resolve` answered.
async fn resolve_waits<L: TxLog>(log: L, end: End) -> (L, TxEntry, TxState) {
    let e = entry("tx-open");
    let mut tx = log.begin().await.unwrap();
    log.record(&mut *tx, &e).await.unwrap();

    let mut resolving = tokio::spawn({
        let (log, e) = (log.clone(), e.clone());
        async move { log.resolve(&e).await }
    });
    let early = tokio::time::timeout(STILL_BLOCKED, &mut resolving).await;
    assert!(
        early.is_err(),
        "resolve did not wait for the transaction holding the id: {early:?}"
    );

    match end {
        End::Commit => tx.commit().await.unwrap(),
        End::Rollback => tx.rollback().await.unwrap(),
    }
    let state = tokio::time::timeout(MUST_FINISH, resolving)
        .await
        .expect("resolve still waits after the transaction ended")
        .expect("the resolve task")
        .expect("resolve");
    (log, e, state)
}

/// A check-back meeting a local transaction that holds the id's uncommitted row waits for
/// it, and answers committed once it commits.
pub async fn resolve_waits_for_the_open_transaction_that_holds_the_id<L: TxLog>(log: L) {
    let (log, e, state) = resolve_waits(log, End::Commit).await;
    assert_eq!(state, TxState::Committed);
    assert_eq!(log.state(&e.tx_id).await.unwrap(), Some(TxState::Committed));
}

/// Like [`resolve_waits_for_the_open_transaction_that_holds_the_id`], but the transaction
/// rolls back: the check-back then settles the id as rolled back.
pub async fn resolve_waits_for_the_open_transaction_that_holds_the_id_then_rolls_back<L: TxLog>(
    log: L,
) {
    let (log, e, state) = resolve_waits(log, End::Rollback).await;
    assert_eq!(state, TxState::RolledBack);
    assert_eq!(
        log.state(&e.tx_id).await.unwrap(),
        Some(TxState::RolledBack)
    );
    let mut tx = log.begin().await.unwrap();
    assert_duplicate(log.record(&mut *tx, &e).await, &e.tx_id);
    tx.rollback().await.unwrap();
}

/// `purge` deletes at most `batch` rows written before `before` a statement, and keeps the
/// rows written later.
pub async fn purge_deletes_old_rows_in_small_batches<L: TxLog>(log: L) {
    let start = now_ms();
    let entries: Vec<TxEntry> = (0..5).map(|i| entry(&format!("tx-old-{i}"))).collect();
    commit(&log, &entries[..3]).await;
    for e in &entries[3..] {
        assert_eq!(log.resolve(e).await.unwrap(), TxState::RolledBack);
    }

    // Every row was written at `start` or later: none is older than it.
    assert_eq!(log.purge(start, 2).await.unwrap(), 0);
    for e in &entries {
        assert!(
            log.state(&e.tx_id).await.unwrap().is_some(),
            "{e:?} was purged"
        );
    }

    let later = now_ms() + 1000;
    let mut counts = Vec::new();
    for _ in 0..4 {
        counts.push(log.purge(later, 2).await.unwrap());
    }
    assert_eq!(counts, [2, 2, 1, 0]);
    for e in &entries {
        assert_eq!(log.state(&e.tx_id).await.unwrap(), None, "{e:?} was kept");
    }
}

/// The purger spawned by [`TxLog::spawn_purger`] deletes what is past its retention in
/// batches of the size asked, and nothing younger.
pub async fn the_purger_deletes_rows_past_retention_in_batches<L: TxLog>(log: L) {
    let entries: Vec<TxEntry> = (0..5).map(|i| entry(&format!("tx-purge-{i}"))).collect();
    commit(&log, &entries).await;
    // A retention of an hour keeps them all.
    let mut keeps = log.spawn_purger(Duration::from_secs(3600), Duration::from_secs(3600), 2);
    let kept = tokio::time::timeout(MUST_FINISH, keeps.wait_passes(1))
        .await
        .unwrap();
    keeps.stop().await;
    assert_eq!(kept.deleted, 0);
    // Past a retention of zero (a millisecond later), all go, two a statement.
    tokio::time::sleep(Duration::from_millis(2)).await;
    let mut purger = log.spawn_purger(Duration::ZERO, Duration::from_secs(3600), 2);
    let done = tokio::time::timeout(MUST_FINISH, purger.wait_passes(1))
        .await
        .unwrap();
    purger.stop().await;
    assert_eq!((done.deleted, done.batches, done.errors), (5, 3, 0));
    for e in &entries {
        assert_eq!(log.state(&e.tx_id).await.unwrap(), None, "{e:?} was kept");
    }
}

/// Ids and keys with quotes, SQL, unicode and the longest lengths are stored as data and
/// found again byte for byte; ids out of bounds are refused before any SQL.
pub async fn awkward_ids_and_keys_round_trip<L: TxLog>(log: L) {
    let long_ascii = "x".repeat(MAX_TX_ID);
    let long_unicode = "é".repeat(MAX_TX_ID / 2);
    let ids = [
        "it's \"quoted\" `ticked`",
        "'; DROP TABLE idemq_tx_log; --",
        "back\\slash %_ wild",
        "zé-ü-日本-🦀",
        "Tab\tand\nnewline",
        "Case",
        "trailing ",
        long_ascii.as_str(),
        long_unicode.as_str(),
    ];
    // The longest business key and topic, in two-byte characters and one more byte.
    let long_field = format!("{}a", "ß".repeat(MAX_TX_FIELD / 2));
    let entries: Vec<TxEntry> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let key = match i % 3 {
                0 => None,
                1 => Some(format!("key '{id}' \"{i}\"")),
                _ => Some(long_field.clone()),
            };
            let topic = if i % 2 == 0 {
                "topic-ü-🦀"
            } else {
                &long_field
            };
            TxEntry::new(*id, key, topic).unwrap()
        })
        .collect();
    commit(&log, &entries).await;
    for id in ids {
        assert_eq!(
            log.state(id).await.unwrap(),
            Some(TxState::Committed),
            "{id:?}"
        );
    }
    // Compared byte for byte: no case folding, no trailing-space padding, no accent folding.
    for other in ["case", "CASE", "trailing", "trailing  ", "ze-u-日本-🦀"] {
        assert_eq!(log.state(other).await.unwrap(), None, "{other:?}");
        let e = TxEntry::new(other, None, "t").unwrap();
        assert_eq!(
            log.resolve(&e).await.unwrap(),
            TxState::RolledBack,
            "{other:?}"
        );
    }
    for id in ids {
        let e = TxEntry::new(id, None, "t").unwrap();
        assert_eq!(log.resolve(&e).await.unwrap(), TxState::Committed, "{id:?}");
    }

    let too_long = "x".repeat(MAX_TX_ID + 1);
    let too_long_unicode = format!("{long_unicode}x");
    for bad in ["", too_long.as_str(), too_long_unicode.as_str(), "nul\0id"] {
        let r = TxEntry::new(bad, None, "t");
        assert!(matches!(r, Err(StoreError::Config(_))), "{bad:?}: {r:?}");
    }
    let over = "y".repeat(MAX_TX_FIELD + 1);
    let r = TxEntry::new("ok", Some(over.clone()), "t");
    assert!(matches!(r, Err(StoreError::Config(_))), "{r:?}");
    let r = TxEntry::new("ok", None, over);
    assert!(matches!(r, Err(StoreError::Config(_))), "{r:?}");
}
