use std::collections::HashMap;

use idemq_core::record::{Claim, ClaimRequest, Record};
use idemq_core::time::UnixMillis;

use crate::claim_next;

/// A record's identity as plain strings, for matching rows read back from a table.
pub type RowKey = (String, String);

/// The row key of a claim request.
pub fn row_key(req: &ClaimRequest) -> RowKey {
    (
        req.key.scope.as_str().to_owned(),
        req.key.key.as_str().to_owned(),
    )
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use idemq_core::store::transition;
    use idemq_core::{IdempotencyKey, RecordKey, Scope};

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
        let released =
            transition::release(rec.as_ref(), idemq_core::FencingToken(1), 2_000).unwrap();
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
}
