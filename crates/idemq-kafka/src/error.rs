//! What can go wrong talking to Kafka.

/// An error of the Kafka adapter.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// librdkafka refused or failed a call (configuration, connection, commit, produce).
    #[error("kafka: {0}")]
    Client(#[from] rdkafka::error::KafkaError),
    /// A produce was not acknowledged within its timeout.
    #[error("kafka produce to {topic} failed: {error}")]
    Produce {
        /// The topic produced to.
        topic: String,
        /// Why.
        error: rdkafka::error::KafkaError,
    },
    /// A topic could not be created.
    #[error("kafka topic {topic}: {error}")]
    Topic {
        /// The topic.
        topic: String,
        /// What the broker answered.
        error: String,
    },
    /// The session was closed (a disconnect, a shutdown): what was not committed is
    /// delivered again.
    #[error("kafka session closed")]
    Closed,
    /// A name from configuration (topic, group) that Kafka would refuse.
    #[error("invalid kafka {what} {name:?}: {why}")]
    InvalidName {
        /// Which name (`topic`, `consumer group`).
        what: &'static str,
        /// The name given.
        name: String,
        /// Why it is refused.
        why: &'static str,
    },
}
