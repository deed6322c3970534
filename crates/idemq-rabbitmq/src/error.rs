/// What can go wrong talking to RabbitMQ.
#[derive(Debug, thiserror::Error)]
pub enum AmqpError {
    /// The broker could not be reached at all; the address is shown without its password.
    #[error("cannot connect to RabbitMQ at {addr}: {source}")]
    Connect {
        /// The broker address, password redacted.
        addr: String,
        /// The client's error.
        #[source]
        source: lapin::Error,
    },
    /// A protocol operation failed (a closed channel, a refused declaration, a lost socket).
    #[error("RabbitMQ: {0}")]
    Lapin(#[from] lapin::Error),
    /// The broker refused a publish (a negative publisher confirm).
    #[error("RabbitMQ nacked a publish to {0:?}")]
    Nacked(String),
    /// A mandatory publish found no queue to route to.
    #[error("RabbitMQ could not route a publish to {0:?}: {1}")]
    Unroutable(String, String),
    /// An acknowledgement could not be sent because the channel is gone; the broker
    /// redelivers the message.
    #[error("the channel closed before the message was acknowledged")]
    ChannelClosed,
    /// The consumer was cancelled by the broker (its queue was deleted, or the connection
    /// closed).
    #[error("the broker cancelled the consumer")]
    Cancelled,
    /// A queue, exchange or key name is not usable.
    #[error("invalid name {0:?}: {1}")]
    InvalidName(String, &'static str),
}
