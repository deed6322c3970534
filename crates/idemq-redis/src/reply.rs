//! Reading the scripts' answers back into records and claims.

use bytes::Bytes;
use idemq_core::{Claim, FencingToken, Fingerprint, Record, State, StoreError};
use redis::Value;

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

fn bytes(v: Value) -> Option<Bytes> {
    match v {
        Value::BulkString(b) => Some(Bytes::from(b)),
        Value::SimpleString(s) => Some(Bytes::from(s)),
        _ => None,
    }
}

fn array(v: Value) -> Result<Vec<Value>, StoreError> {
    match v {
        Value::Array(a) => Ok(a),
        other => Err(corrupt(format!("expected an array, got {other:?}"))),
    }
}

/// Reads the claim script's answers, one per key.
pub(crate) fn claims(v: Value, expected: usize) -> Result<Vec<Claim>, StoreError> {
    let answers = array(v)?;
    if answers.len() != expected {
        return Err(corrupt(format!(
            "{} claim answers for {expected} keys",
            answers.len()
        )));
    }
    answers.into_iter().map(claim).collect()
}

fn claim(v: Value) -> Result<Claim, StoreError> {
    let mut a = array(v)?.into_iter();
    let tag = a.next().as_ref().map(int).transpose()?;
    let mut next_int = || {
        a.next()
            .as_ref()
            .map(int)
            .transpose()?
            .ok_or_else(|| corrupt("short claim answer"))
    };
    Ok(match tag {
        Some(1) => {
            let token = FencingToken(next_int()? as u64);
            let attempt = next_int()? as u32;
            let takeover = next_int()? != 0;
            Claim::Acquired {
                token,
                attempt,
                takeover,
            }
        }
        Some(2) => Claim::InProgress { until: next_int()? },
        Some(3) => Claim::Done {
            result: a.next().and_then(bytes),
        },
        Some(4) => Claim::Conflict,
        _ => return Err(corrupt("unknown claim answer")),
    })
}

/// Reads the completion script's answers: true where the token owned the record.
pub(crate) fn flags(v: Value, expected: usize) -> Result<Vec<bool>, StoreError> {
    let answers = array(v)?;
    if answers.len() != expected {
        return Err(corrupt(format!(
            "{} answers for {expected} keys",
            answers.len()
        )));
    }
    answers.iter().map(|v| int(v).map(|i| i == 1)).collect()
}

/// Reads the get script's answer.
pub(crate) fn record(v: Value) -> Result<Option<Record>, StoreError> {
    if matches!(v, Value::Nil) {
        return Ok(None);
    }
    let f = array(v)?;
    let [state, token, lease_until, expires_at, fingerprint, attempts, created_at, updated_at, result]: [Value; 9] =
        f.try_into().map_err(|_| corrupt("a record has the wrong number of fields"))?;
    let state = bytes(state)
        .and_then(|s| State::parse(std::str::from_utf8(&s).ok()?))
        .ok_or_else(|| corrupt("a record has no valid state"))?;
    let fingerprint = match bytes(fingerprint) {
        None => None,
        Some(b) if b.is_empty() => None,
        Some(b) => Some(Fingerprint(
            b[..]
                .try_into()
                .map_err(|_| corrupt("a fingerprint is not 32 bytes"))?,
        )),
    };
    Ok(Some(Record {
        state,
        token: FencingToken(int(&token)? as u64),
        lease_until: int(&lease_until)?,
        expires_at: int(&expires_at)?,
        fingerprint,
        result: bytes(result),
        attempts: int(&attempts)? as u32,
        created_at: int(&created_at)?,
        updated_at: int(&updated_at)?,
    }))
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
        let v = Value::Array(vec![
            Value::Array(vec![
                Value::Int(1),
                Value::Int(3),
                Value::Int(2),
                Value::Int(1),
            ]),
            Value::Array(vec![Value::Int(2), Value::Int(1_700_000_000_000)]),
            Value::Array(vec![Value::Int(3), Value::BulkString(vec![0, 255])]),
            Value::Array(vec![Value::Int(3), Value::Nil]),
            Value::Array(vec![Value::Int(4)]),
        ]);
        assert_eq!(
            claims(v, 5).unwrap(),
            vec![
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
                Claim::Conflict,
            ]
        );
        assert!(claims(Value::Array(vec![]), 1).is_err());
    }

    #[test]
    fn numbers_in_float_form_parse() {
        assert_eq!(num(b"1.7e+12").unwrap(), 1_700_000_000_000);
        assert!(num(b"x").is_err());
    }
}
