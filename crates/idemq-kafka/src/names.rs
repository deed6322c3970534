//! Topic and group names: validated, and the retry and dead-letter topics of a topic.

use crate::error::KafkaError;

/// The longest topic name Kafka accepts.
pub const MAX_TOPIC: usize = 249;

/// The topic retry copies of `topic`'s records wait on: `<topic>.idemq-retry`.
pub fn retry_topic(topic: &str) -> String {
    format!("{topic}.idemq-retry")
}

/// The topic `topic`'s dead letters go to: `<topic>.idemq-dlt`.
pub fn dead_letter_topic(topic: &str) -> String {
    format!("{topic}.idemq-dlt")
}

/// Checks a topic or group name: 1 to 249 characters of `A-Z a-z 0-9 . _ -`, leaving
/// room for the retry and dead-letter suffixes, and not `.` or `..`.
pub fn check_name(what: &'static str, name: &str) -> Result<(), KafkaError> {
    let bad = |why| {
        Err(KafkaError::InvalidName {
            what,
            name: name.chars().take(64).collect(),
            why,
        })
    };
    if name.is_empty() || name.len() > MAX_TOPIC - ".idemq-retry".len() {
        return bad("use 1 to 237 characters");
    }
    if name == "." || name == ".." {
        return bad("`.` and `..` are not names");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        return bad("use only A-Z a-z 0-9 . _ -");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_kafka_accepts_pass_and_others_are_refused() {
        for good in ["orders", "orders.v2", "a_b-c", &"x".repeat(237)] {
            assert!(check_name("topic", good).is_ok(), "{good}");
        }
        for bad in ["", ".", "..", "a b", "a/b", "é", &"x".repeat(238)] {
            assert!(check_name("topic", bad).is_err(), "{bad:?}");
        }
        assert_eq!(retry_topic("orders"), "orders.idemq-retry");
        assert_eq!(dead_letter_topic("orders"), "orders.idemq-dlt");
    }
}
