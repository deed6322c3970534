//! The record state machine as pure functions.
//!
//! Stores that transition a record by reading and writing it inside one lock or transaction
//! (in-memory, SQLite) call these; stores that transition it inside the server (Redis Lua,
//! SQL statements) implement the same rules, and the conformance suite holds them all to it.

use std::time::Duration;

use bytes::Bytes;

use crate::record::{Claim, ClaimRequest, FencingToken, Record, State};
use crate::time::{duration_ms, UnixMillis};

/// The `lease_until` of a released claim: in the past, and told apart from an expired lease
/// so that taking it again is not counted as a takeover.
pub const RELEASED: UnixMillis = 0;

/// Decides a claim on the record currently stored (if any) and returns the answer with the
/// record to write, when one must be written.
pub fn claim(
    current: Option<&Record>,
    req: &ClaimRequest,
    now: UnixMillis,
) -> (Claim, Option<Record>) {
    let lease_until = now + duration_ms(req.lease);
    let expires_at = now + duration_ms(req.retention.max(req.lease));
    let Some(rec) = current.filter(|r| r.expires_at > now) else {
        let rec = Record {
            state: State::Consuming,
            token: FencingToken(1),
            lease_until,
            expires_at,
            fingerprint: req.fingerprint,
            result: None,
            attempts: 1,
            created_at: now,
            updated_at: now,
        };
        let claim = Claim::Acquired {
            token: rec.token,
            attempt: 1,
            takeover: false,
        };
        return (claim, Some(rec));
    };
    if let (Some(have), Some(want)) = (rec.fingerprint, req.fingerprint) {
        if have != want {
            return (Claim::Conflict { existing: have }, None);
        }
    }
    match rec.state {
        State::Consumed => (
            Claim::Done {
                result: rec.result.clone(),
            },
            None,
        ),
        State::Consuming if rec.lease_until > now => (
            Claim::InProgress {
                until: rec.lease_until,
            },
            None,
        ),
        State::Consuming => {
            let next = Record {
                token: FencingToken(rec.token.0 + 1),
                lease_until,
                expires_at: rec.expires_at.max(expires_at),
                attempts: rec.attempts + 1,
                updated_at: now,
                ..rec.clone()
            };
            let claim = Claim::Acquired {
                token: next.token,
                attempt: next.attempts,
                takeover: rec.lease_until != RELEASED,
            };
            (claim, Some(next))
        }
    }
}

/// The record after a successful `complete`, or `None` when the token does not own it.
/// Completing twice with the same token is accepted, so a retried call is harmless.
pub fn complete(
    current: Option<&Record>,
    token: FencingToken,
    result: Option<&[u8]>,
    retention: Duration,
    now: UnixMillis,
) -> Option<Record> {
    let rec = owned(current, token, now)?;
    if rec.state == State::Consumed {
        return Some(rec.clone());
    }
    Some(Record {
        state: State::Consumed,
        result: result.map(Bytes::copy_from_slice),
        expires_at: now + duration_ms(retention),
        updated_at: now,
        ..rec.clone()
    })
}

/// The record after a successful `release`, or `None` when the token does not own a claim.
pub fn release(current: Option<&Record>, token: FencingToken, now: UnixMillis) -> Option<Record> {
    let rec = owned(current, token, now).filter(|r| r.state == State::Consuming)?;
    Some(Record {
        lease_until: RELEASED,
        updated_at: now,
        ..rec.clone()
    })
}

/// The record after a successful `extend`, or `None` when the token does not own a claim.
pub fn extend(
    current: Option<&Record>,
    token: FencingToken,
    lease: Duration,
    now: UnixMillis,
) -> Option<Record> {
    let rec = owned(current, token, now).filter(|r| r.state == State::Consuming)?;
    let lease_until = now + duration_ms(lease);
    Some(Record {
        lease_until,
        expires_at: rec.expires_at.max(lease_until),
        updated_at: now,
        ..rec.clone()
    })
}

fn owned(current: Option<&Record>, token: FencingToken, now: UnixMillis) -> Option<&Record> {
    current.filter(|r| r.expires_at > now && r.token == token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::{Fingerprint, IdempotencyKey, RecordKey, Scope};

    fn req(fp: &[u8]) -> ClaimRequest {
        ClaimRequest {
            key: RecordKey::new(Scope::new("s").unwrap(), IdempotencyKey::new("k").unwrap()),
            fingerprint: Some(Fingerprint::of(fp)),
            lease: Duration::from_secs(10),
            retention: Duration::from_secs(100),
        }
    }

    #[test]
    fn first_claim_acquires_token_one() {
        let (c, rec) = claim(None, &req(b"a"), 1_000);
        assert_eq!(
            c,
            Claim::Acquired {
                token: FencingToken(1),
                attempt: 1,
                takeover: false
            }
        );
        let rec = rec.unwrap();
        assert_eq!(rec.lease_until, 11_000);
        assert_eq!(rec.expires_at, 101_000);
    }

    #[test]
    fn live_lease_is_in_progress_and_expired_lease_is_taken_over() {
        let (_, rec) = claim(None, &req(b"a"), 1_000);
        let rec = rec.unwrap();
        assert_eq!(
            claim(Some(&rec), &req(b"a"), 5_000).0,
            Claim::InProgress { until: 11_000 }
        );
        let (c, next) = claim(Some(&rec), &req(b"a"), 11_000);
        assert_eq!(
            c,
            Claim::Acquired {
                token: FencingToken(2),
                attempt: 2,
                takeover: true
            }
        );
        let next = next.unwrap();
        assert!(complete(Some(&next), FencingToken(1), None, Duration::ZERO, 12_000).is_none());
        assert!(release(Some(&next), FencingToken(1), 12_000).is_none());
    }

    #[test]
    fn released_claim_is_retaken_without_takeover() {
        let (_, rec) = claim(None, &req(b"a"), 1_000);
        let released = release(rec.as_ref(), FencingToken(1), 2_000).unwrap();
        let (c, _) = claim(Some(&released), &req(b"a"), 2_001);
        assert_eq!(
            c,
            Claim::Acquired {
                token: FencingToken(2),
                attempt: 2,
                takeover: false
            }
        );
    }

    #[test]
    fn consumed_is_done_and_other_payload_conflicts() {
        let (_, rec) = claim(None, &req(b"a"), 1_000);
        let done = complete(
            rec.as_ref(),
            FencingToken(1),
            Some(b"ok"),
            Duration::from_secs(50),
            2_000,
        )
        .unwrap();
        assert_eq!(done.expires_at, 52_000);
        assert_eq!(
            claim(Some(&done), &req(b"a"), 3_000).0,
            Claim::Done {
                result: Some(Bytes::from_static(b"ok"))
            }
        );
        assert_eq!(
            claim(Some(&done), &req(b"b"), 3_000).0,
            Claim::Conflict {
                existing: Fingerprint::of(b"a")
            }
        );
        // After expiry the key is new again.
        assert!(matches!(
            claim(Some(&done), &req(b"b"), 52_000).0,
            Claim::Acquired { attempt: 1, .. }
        ));
    }
}
