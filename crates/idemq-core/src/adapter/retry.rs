use std::time::Duration;

/// Exponential backoff for failed handlers, with the defaults Spring AMQP users know:
/// 5 attempts, 3 s first interval, multiplier 2.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first delivery included; after the last the message is
    /// dead-lettered.
    pub max_attempts: u32,
    /// The delay before the second attempt.
    pub initial_interval: Duration,
    /// The factor between one delay and the next.
    pub multiplier: f64,
    /// The longest delay.
    pub max_interval: Duration,
    /// How long to wait before redelivering a message another consumer is running, or that
    /// could not be decided because the store was unavailable.
    pub redeliver_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_interval: Duration::from_secs(3),
            multiplier: 2.0,
            max_interval: Duration::from_secs(300),
            redeliver_after: Duration::from_secs(1),
        }
    }
}

impl RetryPolicy {
    /// The delay before the attempt after failed attempt `attempt` (1-based), or `None`
    /// when `attempt` was the last.
    pub fn delay_after(&self, attempt: u32) -> Option<Duration> {
        if attempt >= self.max_attempts {
            return None;
        }
        let factor = self.multiplier.powi(attempt.saturating_sub(1) as i32);
        let secs = self.initial_interval.as_secs_f64() * factor;
        Some(Duration::from_secs_f64(
            secs.min(self.max_interval.as_secs_f64()),
        ))
    }

    /// Every delay this policy can ask for, in order: adapters that hold retries in the
    /// broker declare one delay tier for each.
    pub fn delays(&self) -> Vec<Duration> {
        (1..self.max_attempts)
            .filter_map(|a| self.delay_after(a))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spring_defaults_double_from_three_seconds() {
        let p = RetryPolicy::default();
        let secs: Vec<u64> = p.delays().iter().map(Duration::as_secs).collect();
        assert_eq!(secs, [3, 6, 12, 24]);
        assert_eq!(p.delay_after(5), None);
    }

    #[test]
    fn delays_are_capped() {
        let p = RetryPolicy {
            max_attempts: 20,
            max_interval: Duration::from_secs(10),
            ..RetryPolicy::default()
        };
        assert_eq!(p.delay_after(19), Some(Duration::from_secs(10)));
    }
}
