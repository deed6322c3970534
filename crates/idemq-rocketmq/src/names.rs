//! Names from configuration, checked before they reach the broker.

use crate::error::RmqError;

/// The longest topic or group name RocketMQ accepts.
pub const MAX_NAME_LEN: usize = 127;

/// Checks a topic or group name against RocketMQ's rules: 1 to 127 characters from
/// `[A-Za-z0-9_%|-]`.
pub fn check_name(what: &'static str, name: &str) -> Result<(), RmqError> {
    let why = if name.is_empty() {
        Some("empty")
    } else if name.len() > MAX_NAME_LEN {
        Some("longer than 127 characters")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'%' | b'|'))
    {
        Some("only letters, digits, '_', '-', '%' and '|' are allowed")
    } else {
        None
    };
    match why {
        Some(why) => Err(RmqError::InvalidName {
            what,
            name: name.to_string(),
            why,
        }),
        None => Ok(()),
    }
}

/// The topic a group's retry copies wait on, at the broker's delay levels.
///
/// Not the broker's `%RETRY%<group>`: `rocketmq-broker` 1.0.0 sends every message a client
/// produces to a `%RETRY%` topic straight to the dead-letter topic while the group holds no
/// queue lock (its check is the inverse of the Java broker's), so a copy sent there with
/// its attempt and error would be dead-lettered at once. The broker's own send-back keeps
/// working (a failed listener call uses it) but cannot carry properties.
pub fn retry_topic(group: &str) -> String {
    format!("idemq-retry-{group}")
}

/// The broker's dead-letter topic of a consumer group.
pub fn dead_letter_topic(group: &str) -> String {
    format!("%DLQ%{group}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_name("topic", "orders_v2-eu").is_ok());
        assert!(check_name("topic", "%DLQ%group").is_ok());
        assert!(check_name("topic", "").is_err());
        assert!(check_name("topic", "orders.eu").is_err());
        assert!(check_name("topic", "a b").is_err());
        assert!(check_name("topic", &"x".repeat(128)).is_err());
        assert!(check_name("topic", &retry_topic("stock")).is_ok());
    }
}
