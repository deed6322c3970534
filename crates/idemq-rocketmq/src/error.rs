//! What can go wrong talking to RocketMQ.

/// An error of the RocketMQ adapter.
#[derive(Debug, thiserror::Error)]
pub enum RmqError {
    /// The client refused or failed a call (connection, route, send, start).
    #[error("rocketmq client: {0}")]
    Client(#[from] rocketmq_client_rust::ClientError),
    /// The client runtime could not be built.
    #[error("rocketmq runtime: {0}")]
    Runtime(String),
    /// A message could not be built (a topic or property the client refused).
    #[error("rocketmq message: {0}")]
    Message(String),
    /// A send returned without a result, or with a status other than `SEND_OK`.
    #[error("rocketmq send to {topic} not stored: {status}")]
    NotStored {
        /// The topic sent to.
        topic: String,
        /// The status the broker answered.
        status: String,
    },
    /// The session was closed (a disconnect, a shutdown): the broker redelivers what was
    /// not settled.
    #[error("rocketmq session closed")]
    Closed,
    /// A name from configuration (topic, group) that RocketMQ would refuse.
    #[error("invalid rocketmq {what} {name:?}: {why}")]
    InvalidName {
        /// Which name (`topic`, `consumer group`).
        what: &'static str,
        /// The name given.
        name: String,
        /// Why it is refused.
        why: &'static str,
    },
}
