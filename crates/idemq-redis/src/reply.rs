//! Reading the scripts' answers back into records and claims.
//!
//! The batch scripts answer one binary string each (see `lua/claim.lua`), read here in place
//! without a [`Value`] per key; records come back as stored (the layout in `store.rs`).

use bytes::Bytes;
use idemq_core::{Claim, FencingToken, Fingerprint, Record, State, StoreError};
use redis::Value;

use crate::conn::{as_array, store_error};

fn corrupt(what: impl Into<String>) -> StoreError {
    StoreError::Corrupt(what.into())
}

fn int(v: &Value) -> Result<i64, StoreError> {
    match v {
        Value::Int(i) => Ok(*i),
        Value::BulkString(b) => num(b),
        Value::SimpleString(s) => num(s.as_bytes()),
        other => Err(corrupt(format!("expected a number, got {other:?}"))),
    }
}

/// A number written by Lua: plain digits, or (for values Lua prints in float form) a float.
fn num(b: &[u8]) -> Result<i64, StoreError> {
    let s = std::str::from_utf8(b).map_err(|_| corrupt("a number field is not text"))?;
    s.parse::<i64>()
        .or_else(|_| s.parse::<f64>().map(|f| f as i64))
        .map_err(|_| corrupt(format!("not a number: {s:?}")))
}

fn array(v: Value) -> Result<Vec<Value>, StoreError> {
    match v {
        Value::Array(a) => Ok(a),
        other => Err(corrupt(format!("expected an array, got {other:?}"))),
    }
}

fn blob(v: Value) -> Result<Vec<u8>, StoreError> {
    match v {
        Value::BulkString(b) => Ok(b),
        Value::SimpleString(s) => Ok(s.into_bytes()),
        other => Err(corrupt(format!("expected a string, got {other:?}"))),
    }
}

/// A cursor over a binary answer or record.
struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        if self.buf.len() < n {
            return Err(corrupt(format!("{} is cut short", self.what)));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn byte(&mut self) -> Result<u8, StoreError> {
        Ok(self.take(1)?[0])
    }

    /// A big-endian `i8` of Lua's `struct.pack`.
    fn i64(&mut self) -> Result<i64, StoreError> {
        let b = self.take(8)?;
        Ok(i64::from_be_bytes(b.try_into().expect("8 bytes")))
    }

    fn u32(&mut self) -> Result<u32, StoreError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes(b.try_into().expect("4 bytes")))
    }
}

/// Reads the claim script's answer, one entry per key.
pub(crate) fn claims(v: Value, expected: usize) -> Result<Vec<Claim>, StoreError> {
    let buf = blob(v)?;
    let mut r = Reader {
        buf: &buf,
        what: "a claim answer",
    };
    let mut out = Vec::with_capacity(expected);
    while !r.buf.is_empty() {
        out.push(match r.byte()? {
            b'N' => Claim::Acquired {
                token: FencingToken(1),
                attempt: 1,
                takeover: false,
            },
            b'A' => Claim::Acquired {
                token: FencingToken(r.i64()? as u64),
                attempt: r.i64()? as u32,
                takeover: r.byte()? != 0,
            },
            b'I' => Claim::InProgress { until: r.i64()? },
            b'D' => Claim::Done { result: None },
            b'R' => {
                let len = r.u32()? as usize;
                Claim::Done {
                    result: Some(Bytes::copy_from_slice(r.take(len)?)),
                }
            }
            b'X' => {
                let mut existing = [0u8; 32];
                existing.copy_from_slice(r.take(32)?);
                Claim::Conflict {
                    existing: Fingerprint(existing),
                }
            }
            other => return Err(corrupt(format!("unknown claim answer {other:#04x}"))),
        });
    }
    if out.len() != expected {
        return Err(corrupt(format!(
            "{} claim answers for {expected} keys",
            out.len()
        )));
    }
    Ok(out)
}

/// Reads the completion script's answer: true where the token owned the record.
pub(crate) fn flags(v: Value, expected: usize) -> Result<Vec<bool>, StoreError> {
    let buf = blob(v)?;
    if buf.len() != expected {
        return Err(corrupt(format!(
            "{} answers for {expected} keys",
            buf.len()
        )));
    }
    buf.iter()
        .map(|b| match b {
            b'1' => Ok(true),
            b'0' => Ok(false),
            _ => Err(corrupt("unknown completion answer")),
        })
        .collect()
}

/// Reads the get script's answer: an entry per key, each a record as stored or nil.
pub(crate) fn records(v: Value, expected: usize) -> Result<Vec<Option<Record>>, StoreError> {
    let entries = as_array(v).map_err(store_error)?;
    if entries.len() != expected {
        return Err(corrupt(format!(
            "{} records for {expected} keys",
            entries.len()
        )));
    }
    entries
        .into_iter()
        .map(|v| match v {
            Value::Nil => Ok(None),
            v => decode(&blob(v)?).map(Some),
        })
        .collect()
}

/// Decodes a stored record (the layout in `store.rs`).
pub(crate) fn decode(buf: &[u8]) -> Result<Record, StoreError> {
    let mut r = Reader {
        buf,
        what: "a record",
    };
    let fingerprint_len = r.byte()?;
    let fingerprint: [u8; 32] = r.take(32)?.try_into().expect("32 bytes");
    let fingerprint = match fingerprint_len {
        0 => None,
        32 => Some(Fingerprint(fingerprint)),
        _ => return Err(corrupt("a fingerprint is not 32 bytes")),
    };
    let token = FencingToken(r.i64()? as u64);
    let attempts = r.i64()? as u32;
    let created_at = r.i64()?;
    let lease_until = r.i64()?;
    let state = match r.byte()? {
        b'C' => State::Consuming,
        b'D' => State::Consumed,
        _ => return Err(corrupt("a record has no valid state")),
    };
    let expires_at = r.i64()?;
    let updated_at = r.i64()?;
    let result = match r.byte()? {
        b'n' => None,
        b'r' => Some(Bytes::copy_from_slice(r.buf)),
        _ => return Err(corrupt("a record has no valid result marker")),
    };
    Ok(Record {
        state,
        token,
        lease_until,
        expires_at,
        fingerprint,
        result,
        attempts,
        created_at,
        updated_at,
    })
}

/// Reads the stats script's answer.
pub(crate) fn counts(v: Value) -> Result<(u64, u64), StoreError> {
    let a = array(v)?;
    match a.as_slice() {
        [consuming, consumed] => Ok((int(consuming)? as u64, int(consumed)? as u64)),
        _ => Err(corrupt("stats answer")),
    }
}

/// Reads an integer reply.
pub(crate) fn integer(v: &Value) -> Result<i64, StoreError> {
    int(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_answers_parse() {
        let mut buf = b"N".to_vec();
        buf.push(b'A');
        buf.extend(3i64.to_be_bytes());
        buf.extend(2i64.to_be_bytes());
        buf.push(1);
        buf.push(b'I');
        buf.extend(1_700_000_000_000i64.to_be_bytes());
        buf.push(b'R');
        buf.extend(2u32.to_be_bytes());
        buf.extend([0, 255]);
        buf.extend(b"DX");
        buf.extend([7u8; 32]);
        assert_eq!(
            claims(Value::BulkString(buf.clone()), 6).unwrap(),
            vec![
                Claim::Acquired {
                    token: FencingToken(1),
                    attempt: 1,
                    takeover: false
                },
                Claim::Acquired {
                    token: FencingToken(3),
                    attempt: 2,
                    takeover: true
                },
                Claim::InProgress {
                    until: 1_700_000_000_000
                },
                Claim::Done {
                    result: Some(Bytes::from_static(&[0, 255]))
                },
                Claim::Done { result: None },
                Claim::Conflict {
                    existing: Fingerprint([7; 32])
                },
            ]
        );
        assert!(claims(Value::BulkString(buf.clone()), 5).is_err());
        assert!(claims(Value::BulkString(buf[..buf.len() - 4].to_vec()), 6).is_err());
        assert!(claims(Value::BulkString(b"?".to_vec()), 1).is_err());
    }

    #[test]
    fn records_decode_and_reject_garbage() {
        let mut buf = vec![32];
        buf.extend([9u8; 32]);
        for n in [7i64, 2, 10, 0] {
            buf.extend(n.to_be_bytes());
        }
        buf.push(b'D');
        for n in [99i64, 20] {
            buf.extend(n.to_be_bytes());
        }
        buf.push(b'r');
        buf.extend([0, b'\r', b'\n']);
        let rec = decode(&buf).unwrap();
        assert_eq!(rec.state, State::Consumed);
        assert_eq!(rec.token, FencingToken(7));
        assert_eq!((rec.lease_until, rec.expires_at), (0, 99));
        assert_eq!((rec.attempts, rec.created_at, rec.updated_at), (2, 10, 20));
        assert_eq!(rec.fingerprint, Some(Fingerprint([9; 32])));
        assert_eq!(rec.result.as_deref(), Some(&[0, b'\r', b'\n'][..]));
        // The offsets the scripts use: state at 65, expires_at at 66, the result after 83.
        assert_eq!(buf[65], b'D');
        assert_eq!(buf[66..74], 99i64.to_be_bytes());
        assert_eq!(buf[83..], [0, b'\r', b'\n']);
        assert!(decode(&buf[..40]).is_err());
        assert!(decode(b"state").is_err());
        buf[0] = 5;
        assert!(decode(&buf).is_err());
    }

    #[test]
    fn numbers_in_float_form_parse() {
        assert_eq!(num(b"1.7e+12").unwrap(), 1_700_000_000_000);
        assert!(num(b"x").is_err());
    }
}
