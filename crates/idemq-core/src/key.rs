//! Idempotency keys, the scopes they live in, and how a key is taken from a message.

use std::fmt;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::message::Message;

/// Keys longer than this many bytes are replaced by their SHA-256 digest.
pub const MAX_KEY_BYTES: usize = 200;
/// The longest scope accepted, in bytes.
pub const MAX_SCOPE_BYTES: usize = 128;
/// The prefix of a key that was replaced by its digest.
pub const DIGEST_PREFIX: &str = "sha256:";

/// Why a key or scope could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The key was empty: an empty key would make every message a duplicate of the first.
    #[error("the idempotency key is empty")]
    Empty,
    /// The message carries no value for the chosen key strategy.
    #[error("the message has no {0}")]
    Missing(String),
    /// A scope must be 1..=128 bytes of `A-Z a-z 0-9 . _ - : / @`.
    #[error("invalid scope {0:?}: use 1 to 128 characters of A-Z a-z 0-9 . _ - : / @")]
    InvalidScope(String),
    /// A custom extractor refused the message.
    #[error("key extractor failed: {0}")]
    Extractor(String),
}

/// A namespace for keys: a consumer group and topic, or any name the user chooses.
///
/// The same key in two scopes is two records, so two consumers of one message both run.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope(Arc<str>);

impl Scope {
    /// Validates and wraps a scope name.
    pub fn new(name: impl AsRef<str>) -> Result<Self, KeyError> {
        let name = name.as_ref();
        let ok = !name.is_empty()
            && name.len() <= MAX_SCOPE_BYTES
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-_:/@".contains(&b));
        if ok {
            Ok(Self(name.into()))
        } else {
            Err(KeyError::InvalidScope(name.chars().take(64).collect()))
        }
    }

    /// A scope for a consumer group reading a topic: `group/topic`.
    pub fn for_consumer(group: &str, topic: &str) -> Result<Self, KeyError> {
        Self::new(format!("{group}/{topic}"))
    }

    /// The scope's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A normalised idempotency key.
///
/// Keys are kept as given when they are valid UTF-8, at most [`MAX_KEY_BYTES`] long and free
/// of control characters (NUL included). Any other key is replaced by
/// `sha256:` followed by the 64 hex digits of its SHA-256 digest, deterministically, so every
/// store can hold every key and the same raw key always maps to the same record.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdempotencyKey(Arc<str>);

impl IdempotencyKey {
    /// Normalises a key given as text.
    pub fn new(raw: impl AsRef<str>) -> Result<Self, KeyError> {
        Self::from_bytes(raw.as_ref().as_bytes())
    }

    /// Normalises a key given as bytes (a header value, a broker id).
    pub fn from_bytes(raw: &[u8]) -> Result<Self, KeyError> {
        if raw.is_empty() {
            return Err(KeyError::Empty);
        }
        match std::str::from_utf8(raw) {
            Ok(s)
                if raw.len() <= MAX_KEY_BYTES
                    && !s.starts_with(DIGEST_PREFIX)
                    && !s.chars().any(char::is_control) =>
            {
                Ok(Self(s.into()))
            }
            _ => Ok(Self::digest_of(raw)),
        }
    }

    /// The key made of the digest of `raw`, whatever `raw` is.
    pub fn digest_of(raw: &[u8]) -> Self {
        Self(format!("{DIGEST_PREFIX}{}", hex::encode(Sha256::digest(raw))).into())
    }

    /// The key as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The full identity of a record: a key inside its scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordKey {
    /// The namespace.
    pub scope: Scope,
    /// The key inside it.
    pub key: IdempotencyKey,
}

impl RecordKey {
    /// Pairs a scope and a key.
    pub fn new(scope: Scope, key: IdempotencyKey) -> Self {
        Self { scope, key }
    }
}

impl fmt::Display for RecordKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.scope, self.key)
    }
}

/// The SHA-256 digest of a payload, kept with a record to tell a replay from a key collision.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of a payload.
    pub fn of(payload: &[u8]) -> Self {
        Self(Sha256::digest(payload).into())
    }

    /// The fingerprint as 64 lowercase hex digits, the form text stores keep.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses the 64-hex-digit form; `None` when it is not one.
    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Self(out))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({})", &self.to_hex()[..12])
    }
}

type Extractor<M> = Arc<dyn Fn(&M) -> Result<String, KeyError> + Send + Sync>;

/// How a consumer takes the idempotency key from a message.
pub enum KeyStrategy<M> {
    /// A business key (order id, payment serial) read from the message: the preferred choice,
    /// since it also catches a producer that sends the same order twice under new message ids.
    Business(Extractor<M>),
    /// The broker's or producer's message id.
    MessageId,
    /// The value of a named header.
    Header(String),
    /// Any other extractor.
    Custom(Extractor<M>),
    /// The SHA-256 of the payload: identical payloads are one message.
    PayloadHash,
}

impl<M> Clone for KeyStrategy<M> {
    fn clone(&self) -> Self {
        match self {
            Self::Business(f) => Self::Business(f.clone()),
            Self::MessageId => Self::MessageId,
            Self::Header(h) => Self::Header(h.clone()),
            Self::Custom(f) => Self::Custom(f.clone()),
            Self::PayloadHash => Self::PayloadHash,
        }
    }
}

impl<M> fmt::Debug for KeyStrategy<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Business(_) => f.write_str("Business(..)"),
            Self::MessageId => f.write_str("MessageId"),
            Self::Header(h) => write!(f, "Header({h:?})"),
            Self::Custom(_) => f.write_str("Custom(..)"),
            Self::PayloadHash => f.write_str("PayloadHash"),
        }
    }
}

impl<M: Message> KeyStrategy<M> {
    /// A business key read by `f`; `None` means the message has no such key.
    pub fn business<F>(f: F) -> Self
    where
        F: Fn(&M) -> Option<String> + Send + Sync + 'static,
    {
        Self::Business(Arc::new(move |m| {
            f(m).ok_or_else(|| KeyError::Missing("business key".into()))
        }))
    }

    /// A custom extractor that may refuse a message with its own reason.
    pub fn custom<F>(f: F) -> Self
    where
        F: Fn(&M) -> Result<String, KeyError> + Send + Sync + 'static,
    {
        Self::Custom(Arc::new(f))
    }

    /// Takes the key from a message and normalises it.
    pub fn key_of(&self, msg: &M) -> Result<IdempotencyKey, KeyError> {
        match self {
            Self::Business(f) | Self::Custom(f) => IdempotencyKey::new(f(msg)?),
            Self::MessageId => IdempotencyKey::new(
                msg.message_id()
                    .ok_or_else(|| KeyError::Missing("message id".into()))?,
            ),
            Self::Header(name) => IdempotencyKey::from_bytes(
                msg.header(name)
                    .ok_or_else(|| KeyError::Missing(format!("header {name:?}")))?,
            ),
            Self::PayloadHash => Ok(IdempotencyKey::digest_of(msg.payload())),
        }
    }
}

type FingerprintExtractor<M> = Arc<dyn Fn(&M) -> Result<Vec<u8>, KeyError> + Send + Sync>;

/// What a record's [`Fingerprint`] is taken from: it tells a copy of a message from another
/// message that reuses its key, which is dead-lettered as a conflict.
///
/// The default follows the key strategy ([`FingerprintStrategy::default_for`]): a business
/// key names the business operation, so a resend of it with another serializer, a timestamp
/// or a retry counter is still a duplicate, and it is not fingerprinted; a message id or a
/// header says nothing about the content, so the payload is.
pub enum FingerprintStrategy<M> {
    /// The SHA-256 of the whole payload, byte for byte.
    Payload,
    /// The SHA-256 of what an extractor takes from the message, for example some fields in a
    /// canonical form; an extractor error makes the message unkeyable.
    Extract(FingerprintExtractor<M>),
    /// No fingerprint: every message under a consumed key is a duplicate.
    Off,
}

impl<M> Clone for FingerprintStrategy<M> {
    fn clone(&self) -> Self {
        match self {
            Self::Payload => Self::Payload,
            Self::Extract(f) => Self::Extract(f.clone()),
            Self::Off => Self::Off,
        }
    }
}

impl<M> fmt::Debug for FingerprintStrategy<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Payload => f.write_str("Payload"),
            Self::Extract(_) => f.write_str("Extract(..)"),
            Self::Off => f.write_str("Off"),
        }
    }
}

impl<M: Message> FingerprintStrategy<M> {
    /// The default for a key strategy: [`Off`](Self::Off) for a business key, a custom
    /// extractor and the payload hash (which is a fingerprint already);
    /// [`Payload`](Self::Payload) for a message id or a header.
    pub fn default_for(keys: &KeyStrategy<M>) -> Self {
        match keys {
            KeyStrategy::MessageId | KeyStrategy::Header(_) => Self::Payload,
            KeyStrategy::Business(_) | KeyStrategy::Custom(_) | KeyStrategy::PayloadHash => {
                Self::Off
            }
        }
    }

    /// Fingerprints what `f` takes from each message.
    pub fn extract<F>(f: F) -> Self
    where
        F: Fn(&M) -> Result<Vec<u8>, KeyError> + Send + Sync + 'static,
    {
        Self::Extract(Arc::new(f))
    }

    /// The fingerprint of a message, `None` when this strategy keeps none.
    pub fn of(&self, msg: &M) -> Result<Option<Fingerprint>, KeyError> {
        Ok(match self {
            Self::Payload => Some(Fingerprint::of(msg.payload())),
            Self::Extract(f) => Some(Fingerprint::of(&f(msg)?)),
            Self::Off => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Envelope;

    #[test]
    fn empty_key_is_an_error() {
        assert_eq!(IdempotencyKey::new(""), Err(KeyError::Empty));
    }

    #[test]
    fn short_printable_keys_are_kept() {
        assert_eq!(
            IdempotencyKey::new("order-42").unwrap().as_str(),
            "order-42"
        );
        assert_eq!(IdempotencyKey::new("订单-7").unwrap().as_str(), "订单-7");
    }

    #[test]
    fn long_or_unholdable_keys_become_a_stable_digest() {
        let long = "x".repeat(MAX_KEY_BYTES + 1);
        for raw in [long.as_bytes(), b"a\0b", b"line\nbreak", &[0xff, 0xfe][..]] {
            let k = IdempotencyKey::from_bytes(raw).unwrap();
            assert!(k.as_str().starts_with(DIGEST_PREFIX), "{k}");
            assert_eq!(k.as_str().len(), DIGEST_PREFIX.len() + 64);
            assert_eq!(k, IdempotencyKey::from_bytes(raw).unwrap());
        }
        let at_limit = "y".repeat(MAX_KEY_BYTES);
        assert_eq!(IdempotencyKey::new(&at_limit).unwrap().as_str(), at_limit);
    }

    #[test]
    fn a_raw_key_cannot_impersonate_a_digest() {
        let digest = IdempotencyKey::digest_of(b"abc");
        let forged = IdempotencyKey::new(digest.as_str()).unwrap();
        assert_ne!(forged, digest);
    }

    #[test]
    fn scopes_are_validated() {
        assert!(Scope::new("group/topic").is_ok());
        for bad in ["", "a b", "x{y}", "q'uote", "semi;colon", &"s".repeat(129)] {
            assert!(Scope::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn strategies_take_the_right_field() {
        let msg = Envelope::new(&b"payload"[..])
            .with_message_id("mid-1")
            .with_header("order", "o-9");
        let by_id = KeyStrategy::<Envelope>::MessageId.key_of(&msg).unwrap();
        assert_eq!(by_id.as_str(), "mid-1");
        let by_header = KeyStrategy::<Envelope>::Header("order".into())
            .key_of(&msg)
            .unwrap();
        assert_eq!(by_header.as_str(), "o-9");
        let business = KeyStrategy::business(|m: &Envelope| {
            std::str::from_utf8(m.payload()).ok().map(str::to_owned)
        });
        assert_eq!(business.key_of(&msg).unwrap().as_str(), "payload");
        let hash = KeyStrategy::<Envelope>::PayloadHash.key_of(&msg).unwrap();
        assert_eq!(hash, IdempotencyKey::digest_of(b"payload"));
        let missing = KeyStrategy::<Envelope>::Header("nope".into()).key_of(&msg);
        assert!(matches!(missing, Err(KeyError::Missing(_))));
    }

    #[test]
    fn fingerprints_follow_the_key_strategy_unless_chosen() {
        let a = Envelope::new(&br#"{"id":1,"qty":2}"#[..]).with_message_id("m");
        let b = Envelope::new(&br#"{"id": 1, "qty": 2}"#[..]).with_message_id("m");
        let by_id = FingerprintStrategy::default_for(&KeyStrategy::<Envelope>::MessageId);
        assert_ne!(by_id.of(&a).unwrap(), by_id.of(&b).unwrap());
        let business = KeyStrategy::business(|_: &Envelope| Some("1".into()));
        let off = FingerprintStrategy::default_for(&business);
        assert_eq!((off.of(&a).unwrap(), off.of(&b).unwrap()), (None, None));
        let fields = FingerprintStrategy::<Envelope>::extract(|m| {
            Ok(m.payload().iter().copied().filter(|c| *c != b' ').collect())
        });
        assert_eq!(fields.of(&a).unwrap(), fields.of(&b).unwrap());
        assert!(fields.of(&a).unwrap().is_some());
    }
}
