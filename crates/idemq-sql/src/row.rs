use idemq_core::record::{Claim, ClaimRequest, FencingToken, Record, State};
use idemq_core::store::transition;
use idemq_core::time::UnixMillis;
use idemq_core::{Fingerprint, StoreError};

/// One row of the idempotency table, column for column, as the drivers read it.
///
/// Times are Unix milliseconds in `BIGINT` columns, so every database stores the same
/// numbers the core computes with, whatever its session time zone.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RawRecord {
    /// `CONSUMING` or `CONSUMED`.
    pub state: String,
    /// The fencing token.
    pub token: i64,
    /// The lease deadline.
    pub lease_until: i64,
    /// When the row may be deleted.
    pub expires_at: i64,
    /// The 32-byte payload fingerprint.
    pub fingerprint: Option<Vec<u8>>,
    /// The stored result.
    pub result: Option<Vec<u8>>,
    /// How many claims the key had.
    pub attempts: i64,
    /// When the row was first written.
    pub created_at: i64,
    /// When the row last changed.
    pub updated_at: i64,
}

impl RawRecord {
    /// The columns, in the order of [`RawRecord`]'s fields, for `SELECT` lists.
    pub const COLUMNS: &'static str =
        "state, token, lease_until, expires_at, fingerprint, result, attempts, created_at, updated_at";

    /// Checks and converts the row; a value no store writes is [`StoreError::Corrupt`].
    pub fn into_record(self) -> Result<Record, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("{what} in the idempotency table"));
        let state = State::parse(&self.state).ok_or_else(|| corrupt("unknown state"))?;
        let fingerprint = match self.fingerprint {
            None => None,
            Some(b) => Some(Fingerprint(
                b.try_into()
                    .map_err(|_| corrupt("fingerprint not 32 bytes"))?,
            )),
        };
        Ok(Record {
            state,
            token: FencingToken(u64::try_from(self.token).map_err(|_| corrupt("negative token"))?),
            lease_until: self.lease_until,
            expires_at: self.expires_at,
            fingerprint,
            result: self.result.map(Into::into),
            attempts: u32::try_from(self.attempts).map_err(|_| corrupt("bad attempts"))?,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }

    /// The row of a record.
    pub fn from_record(rec: &Record) -> Self {
        Self {
            state: rec.state.as_str().to_owned(),
            token: rec.token.0 as i64,
            lease_until: rec.lease_until,
            expires_at: rec.expires_at,
            fingerprint: rec.fingerprint.map(|f| f.0.to_vec()),
            result: rec.result.as_ref().map(|r| r.to_vec()),
            attempts: i64::from(rec.attempts),
            created_at: rec.created_at,
            updated_at: rec.updated_at,
        }
    }
}

/// The claim rule of [`transition::claim`], with one addition for tables: a row left behind
/// by an expired record is reused with a token *above* the old one rather than `1`, so an
/// owner of the forgotten record can never present a token that is valid again.
pub fn claim_next(
    current: Option<&Record>,
    req: &ClaimRequest,
    now: UnixMillis,
) -> (Claim, Option<Record>) {
    let (mut claim, mut write) = transition::claim(current, req, now);
    if let (Some(old), Some(new), Claim::Acquired { token, .. }) =
        (current, write.as_mut(), &mut claim)
    {
        if new.token <= old.token {
            new.token = FencingToken(old.token.0 + 1);
            *token = new.token;
        }
    }
    (claim, write)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use idemq_core::{IdempotencyKey, RecordKey, Scope};

    use super::*;

    fn req() -> ClaimRequest {
        ClaimRequest {
            key: RecordKey::new(Scope::new("s").unwrap(), IdempotencyKey::new("k").unwrap()),
            fingerprint: Some(Fingerprint::of(b"p")),
            lease: Duration::from_secs(1),
            retention: Duration::from_secs(2),
        }
    }

    #[test]
    fn rows_round_trip() {
        let (_, rec) = transition::claim(None, &req(), 1_000);
        let mut rec = rec.unwrap();
        rec.result = Some(b"r".to_vec().into());
        assert_eq!(RawRecord::from_record(&rec).into_record().unwrap(), rec);
        let mut bad = RawRecord::from_record(&rec);
        bad.state = "DONE".into();
        assert!(matches!(bad.into_record(), Err(StoreError::Corrupt(_))));
    }

    #[test]
    fn a_reused_expired_row_gets_a_higher_token() {
        let (_, first) = claim_next(None, &req(), 1_000);
        let first = first.unwrap();
        let (c, second) = claim_next(Some(&first), &req(), 10_000);
        assert!(matches!(
            c,
            Claim::Acquired {
                token: FencingToken(2),
                attempt: 1,
                takeover: false
            }
        ));
        assert_eq!(second.unwrap().token, FencingToken(2));
    }
}
