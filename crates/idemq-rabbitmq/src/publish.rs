//! Publishing with publisher confirms, shared by the publisher and by settling deliveries.

use lapin::options::BasicPublishOptions;
use lapin::{BasicProperties, Channel, Confirmation, PublisherConfirm};

use crate::error::AmqpError;
use crate::topology::short;

/// Persistent delivery mode.
pub(crate) const PERSISTENT: u8 = 2;

/// Sends one message, mandatory, without waiting for its confirm.
pub(crate) async fn send(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    payload: &[u8],
    properties: BasicProperties,
) -> Result<PublisherConfirm, AmqpError> {
    Ok(channel
        .basic_publish(
            short(exchange)?,
            short(routing_key)?,
            BasicPublishOptions {
                mandatory: true,
                ..BasicPublishOptions::default()
            },
            payload,
            properties,
        )
        .await?)
}

/// Waits for a publish to be confirmed: a nack or a returned (unroutable) message is an
/// error, so a copy is never assumed safe when it is not.
pub(crate) async fn confirmed(confirm: PublisherConfirm, target: &str) -> Result<(), AmqpError> {
    match confirm.await? {
        Confirmation::Ack(None) | Confirmation::NotRequested => Ok(()),
        Confirmation::Ack(Some(returned)) => Err(AmqpError::Unroutable(
            target.to_owned(),
            returned.reply_text.to_string(),
        )),
        Confirmation::Nack(_) => Err(AmqpError::Nacked(target.to_owned())),
    }
}

/// Sends one message and waits for its confirm.
pub(crate) async fn send_confirmed(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    payload: &[u8],
    properties: BasicProperties,
) -> Result<(), AmqpError> {
    let confirm = send(channel, exchange, routing_key, payload, properties).await?;
    let target = if exchange.is_empty() {
        routing_key
    } else {
        exchange
    };
    confirmed(confirm, target).await
}
