//! The view of a broker message that key strategies read.

use std::collections::BTreeMap;

use bytes::Bytes;

/// What the engine needs to see of a message: its payload, id and headers.
///
/// Broker adapters implement this for their delivery types.
pub trait Message {
    /// The message body.
    fn payload(&self) -> &[u8];
    /// The broker's or producer's message id, when there is one.
    fn message_id(&self) -> Option<&str> {
        None
    }
    /// A header value by name.
    fn header(&self, _name: &str) -> Option<&[u8]> {
        None
    }
}

/// A plain message: a payload with an optional id and headers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Envelope {
    /// The body.
    pub payload: Bytes,
    /// The message id.
    pub message_id: Option<String>,
    /// Headers by name.
    pub headers: BTreeMap<String, Bytes>,
}

impl Envelope {
    /// A message with this payload and nothing else.
    pub fn new(payload: impl Into<Bytes>) -> Self {
        Self {
            payload: payload.into(),
            ..Self::default()
        }
    }

    /// Sets the message id.
    pub fn with_message_id(mut self, id: impl Into<String>) -> Self {
        self.message_id = Some(id.into());
        self
    }

    /// Adds a header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }
}

impl Message for Envelope {
    fn payload(&self) -> &[u8] {
        &self.payload
    }
    fn message_id(&self) -> Option<&str> {
        self.message_id.as_deref()
    }
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.get(name).map(|v| v.as_ref())
    }
}

impl<M: Message + ?Sized> Message for &M {
    fn payload(&self) -> &[u8] {
        (**self).payload()
    }
    fn message_id(&self) -> Option<&str> {
        (**self).message_id()
    }
    fn header(&self, name: &str) -> Option<&[u8]> {
        (**self).header(name)
    }
}
