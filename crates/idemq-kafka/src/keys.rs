//! Key strategies for Kafka records. The engine's own strategies work on a
//! [`KafkaDelivery`] too: `KeyStrategy::Header(name)` for a header, `KeyStrategy::business`
//! or `KeyStrategy::custom` for an extractor over the payload, `KeyStrategy::PayloadHash`.

use idemq_core::KeyStrategy;

use crate::delivery::KafkaDelivery;

/// The record key, where producers put the business key (order id, payment serial): the
/// preferred choice, since a resend under a new message id has the same key.
pub fn record_key() -> KeyStrategy<KafkaDelivery> {
    KeyStrategy::business(|d: &KafkaDelivery| {
        d.key()
            .and_then(|k| std::str::from_utf8(k).ok())
            .filter(|k| !k.is_empty())
            .map(str::to_owned)
    })
}

/// The producer's message id (the [`MESSAGE_ID`](crate::MESSAGE_ID) header), the same on
/// every retry copy of one send.
pub fn message_id() -> KeyStrategy<KafkaDelivery> {
    KeyStrategy::MessageId
}
