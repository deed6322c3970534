//! The headers idemq writes (the names every adapter shares), and reading integer headers
//! whatever width they were sent in.

use lapin::types::{AMQPValue, FieldTable};

pub use idemq_consumer::headers::*;

/// An integer header, whatever integer type the sender used.
pub fn int(headers: Option<&FieldTable>, name: &str) -> Option<i64> {
    match headers?.inner().get(name)? {
        AMQPValue::ShortShortInt(v) => Some((*v).into()),
        AMQPValue::ShortShortUInt(v) => Some((*v).into()),
        AMQPValue::ShortInt(v) => Some((*v).into()),
        AMQPValue::ShortUInt(v) => Some((*v).into()),
        AMQPValue::LongInt(v) => Some((*v).into()),
        AMQPValue::LongUInt(v) => Some((*v).into()),
        AMQPValue::LongLongInt(v) => Some(*v),
        AMQPValue::Timestamp(v) => i64::try_from(*v).ok(),
        _ => None,
    }
}

/// A text header (long or short string, or byte array) as bytes.
pub fn bytes<'a>(headers: Option<&'a FieldTable>, name: &str) -> Option<&'a [u8]> {
    match headers?.inner().get(name)? {
        AMQPValue::LongString(s) => Some(s.as_bytes()),
        AMQPValue::ShortString(s) => Some(s.as_str().as_bytes()),
        AMQPValue::ByteArray(b) => Some(b.as_slice()),
        _ => None,
    }
}

/// A text header as a string, when it is valid UTF-8.
pub fn text<'a>(headers: Option<&'a FieldTable>, name: &str) -> Option<&'a str> {
    std::str::from_utf8(bytes(headers, name)?).ok()
}

pub(crate) fn set_int(headers: &mut FieldTable, name: &str, v: i64) {
    headers.insert(name.into(), AMQPValue::LongLongInt(v));
}

pub(crate) fn set_text(headers: &mut FieldTable, name: &str, v: &str) {
    headers.insert(name.into(), AMQPValue::LongString(v.into()));
}
