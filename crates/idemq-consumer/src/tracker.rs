//! The ordered-commit tracker for partitioned logs (Kafka partitions, RocketMQ queues).
