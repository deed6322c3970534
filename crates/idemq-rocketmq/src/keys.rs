//! Key strategies for RocketMQ messages.

use idemq_core::KeyStrategy;

use crate::delivery::RmqDelivery;

/// The first message key (`KEYS`), where the producer puts the business key; the
/// preferred choice, since a resend under a new unique id has the same key.
pub fn business_key() -> KeyStrategy<RmqDelivery> {
    KeyStrategy::business(|d: &RmqDelivery| d.keys().first().map(|k| k.to_string()))
}

/// The producer's unique id (`UNIQ_KEY`), the same on every retry copy of one send.
pub fn unique_id() -> KeyStrategy<RmqDelivery> {
    KeyStrategy::MessageId
}
