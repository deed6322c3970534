use std::collections::HashMap;

use idemq_core::record::{Claim, ClaimRequest, Completion, Record, State};
use idemq_core::store::transition;
use idemq_core::time::UnixMillis;
use idemq_core::{RecordKey, StoreError};

use crate::{check_result_size, claim_next};

/// A record's identity as plain strings, for matching rows read back from a table.
pub type RowKey = (String, String);

/// The row key of a claim request.
pub fn row_key(req: &ClaimRequest) -> RowKey {
    key_row(&req.key)
}

/// The row key of a record key.
pub fn key_row(key: &RecordKey) -> RowKey {
    (key.scope.as_str().to_owned(), key.key.as_str().to_owned())
}

/// What [`decide_claims`] decided for a batch on its locked rows.
#[derive(Debug, Default)]
pub struct Decided {
    /// The answers, by position in the batch.
    pub claims: Vec<(usize, Claim)>,
    /// The rows to write back, each once, with its final value.
    pub writes: HashMap<RowKey, Record>,
    /// Positions whose row was not there (deleted meanwhile): claim them again.
    pub missing: Vec<usize>,
}

/// Applies the claim rule to the positions `todo` of `reqs`, in order, on the rows read
/// under lock (`rows`). A key met twice sees the first claim's write, as two single claims
/// in a row would.
pub fn decide_claims(
    reqs: &[ClaimRequest],
    todo: &[usize],
    mut rows: HashMap<RowKey, Record>,
    now: UnixMillis,
) -> Decided {
    let mut out = Decided::default();
    for &i in todo {
        let k = row_key(&reqs[i]);
        let Some(current) = rows.get(&k) else {
            out.missing.push(i);
            continue;
        };
        let (claim, write) = claim_next(Some(current), &reqs[i], now);
        if let Some(rec) = write {
            rows.insert(k.clone(), rec.clone());
            out.writes.insert(k, rec);
        }
        out.claims.push((i, claim));
    }
    out
}

/// Answers the completions whose result is over `max` bytes with
/// [`StoreError::ResultTooLarge`], before anything is read, as `complete` does. Returns the
/// answers by position (`Ok` where still to be decided) and the positions left to complete.
pub fn split_oversized(
    items: &[Completion<'_>],
    max: usize,
) -> (Vec<Result<(), StoreError>>, Vec<usize>) {
    let answers: Vec<_> = items
        .iter()
        .map(|c| check_result_size(c.result, max))
        .collect();
    let todo = (0..items.len()).filter(|&i| answers[i].is_ok()).collect();
    (answers, todo)
}

/// What [`decide_completions`] decided for a batch on its locked rows.
#[derive(Debug, Default)]
pub struct DecidedCompletions {
    /// The answers, by position in the batch: `Ok` or [`StoreError::LeaseLost`].
    pub answers: Vec<(usize, Result<(), StoreError>)>,
    /// The rows to write back, each once, with its final value.
    pub writes: HashMap<RowKey, Record>,
}

/// Applies the completion rule ([`transition::complete`]) to the positions `todo` of
/// `items`, in order, on the rows read under lock (`rows`; a missing row is a lost lease).
/// A key met twice sees the first completion's write, as two single completes in a row
/// would; a completion that changes nothing (the record was consumed already) writes nothing.
pub fn decide_completions(
    items: &[Completion<'_>],
    todo: &[usize],
    mut rows: HashMap<RowKey, Record>,
    now: UnixMillis,
) -> DecidedCompletions {
    let mut out = DecidedCompletions::default();
    for &i in todo {
        let c = &items[i];
        let k = key_row(c.key);
        let current = rows.get(&k);
        let Some(done) = transition::complete(current, c.token, c.result, c.retention, now) else {
            let lost = StoreError::LeaseLost { key: c.key.clone() };
            out.answers.push((i, Err(lost)));
            continue;
        };
        if current.is_some_and(|r| r.state == State::Consuming) {
            rows.insert(k.clone(), done.clone());
            out.writes.insert(k, done);
        }
        out.answers.push((i, Ok(())));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use idemq_core::{FencingToken, IdempotencyKey, Scope};

    use super::*;

    fn req(k: &str) -> ClaimRequest {
        ClaimRequest {
            key: RecordKey::new(Scope::new("s").unwrap(), IdempotencyKey::new(k).unwrap()),
            fingerprint: None,
            lease: Duration::from_secs(10),
            retention: Duration::from_secs(100),
        }
    }

    #[test]
    fn a_key_twice_in_a_batch_is_acquired_once_and_missing_rows_are_reported() {
        let reqs = vec![req("a"), req("a"), req("gone")];
        // "a" was released, so the first occurrence takes it and the second sees that.
        let (_, rec) = transition::claim(None, &reqs[0], 1_000);
        let released = transition::release(rec.as_ref(), FencingToken(1), 2_000).unwrap();
        let rows = HashMap::from([(row_key(&reqs[0]), released)]);
        let d = decide_claims(&reqs, &[0, 1, 2], rows, 3_000);
        assert!(matches!(
            d.claims[0],
            (0, Claim::Acquired { attempt: 2, .. })
        ));
        assert!(matches!(d.claims[1], (1, Claim::InProgress { .. })));
        assert_eq!(d.missing, vec![2]);
        assert_eq!(d.writes.len(), 1);
    }

    #[test]
    fn completions_of_one_key_apply_in_order_and_oversized_ones_are_refused_first() {
        let reqs = [req("a"), req("b")];
        let (_, a) = transition::claim(None, &reqs[0], 1_000);
        let (_, b) = transition::claim(None, &reqs[1], 1_000);
        let rows = HashMap::from([
            (row_key(&reqs[0]), a.unwrap()),
            (row_key(&reqs[1]), b.unwrap()),
        ]);
        let c = |k: &'static str, token: u64, result: &'static [u8], secs: u64| {
            let key = if k == "a" { &reqs[0].key } else { &reqs[1].key };
            Completion {
                key,
                token: FencingToken(token),
                result: Some(result),
                retention: Duration::from_secs(secs),
            }
        };
        let items = vec![
            c("a", 2, b"stale", 10),
            c("a", 1, b"first", 20),
            c("b", 1, b"too large", 30),
            c("a", 1, b"again", 40),
        ];
        let (answers, todo) = split_oversized(&items, 8);
        assert_eq!(todo, vec![0, 1, 3]);
        assert!(matches!(
            answers[2],
            Err(StoreError::ResultTooLarge { size: 9, max: 8 })
        ));
        let d = decide_completions(&items, &todo, rows, 5_000);
        let oks: Vec<(usize, bool)> = d.answers.iter().map(|(i, a)| (*i, a.is_ok())).collect();
        assert_eq!(oks, vec![(0, false), (1, true), (3, true)]);
        assert_eq!(d.writes.len(), 1);
        let a = &d.writes[&row_key(&reqs[0])];
        assert_eq!(
            (a.state, a.result.as_deref(), a.expires_at),
            (State::Consumed, Some(&b"first"[..]), 25_000)
        );
    }
}
