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
