//! The queues one idempotent consumer needs, with names derived from its work queue.

use std::collections::BTreeSet;
use std::time::Duration;

use idemq_core::adapter::RetryPolicy;
use lapin::options::{
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, ExchangeKind};

use crate::error::AmqpError;

/// The longest base name accepted: suffixes such as `.retry.300000ms` must still fit the
/// 255-byte limit of AMQP names.
pub const MAX_NAME_BYTES: usize = 200;

/// One retry tier: a queue whose messages wait `delay`, then dead-letter back to the work
/// queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tier {
    /// How long a message waits in this queue.
    pub delay: Duration,
    /// The queue's name.
    pub queue: String,
}

/// The exchange and queues behind one idempotent consumer.
///
/// For a work queue `orders` it holds:
///
/// | name | what |
/// | --- | --- |
/// | `orders.exchange` | direct exchange; routing key `orders` reaches the work queue |
/// | `orders` | the work queue |
/// | `orders.retry.<ms>ms` | one per delay of the [`RetryPolicy`]: fixed `x-message-ttl`, dead-letters back to the work queue |
/// | `orders.delay.<ms>ms` | the same for redeliveries of messages in progress elsewhere |
/// | `orders.dlq` | the dead-letter queue |
///
/// Delays are whole queues rather than per-message expirations because RabbitMQ only
/// expires the message at the head of a queue: a 3 s retry queued behind a 24 s one would
/// wait 24 s. Names carry the delay, so changing the policy declares new queues rather than
/// clashing with the arguments of old ones.
#[derive(Debug, Clone)]
pub struct Topology {
    exchange: String,
    queue: String,
    tiers: Vec<Tier>,
    delay: Tier,
    dead_letter: String,
    policy: RetryPolicy,
}

impl Topology {
    /// The topology of work queue `queue` under `policy`.
    ///
    /// `queue` must be 1 to [`MAX_NAME_BYTES`] bytes of `A-Z a-z 0-9 _ - . :` and must not
    /// start with the reserved `amq.`.
    pub fn new(queue: &str, policy: RetryPolicy) -> Result<Self, AmqpError> {
        validate_name(queue)?;
        let ms = |d: Duration| d.as_millis();
        let distinct: BTreeSet<Duration> = policy.delays().into_iter().collect();
        let tiers = distinct
            .into_iter()
            .map(|delay| Tier {
                delay,
                queue: format!("{queue}.retry.{}ms", ms(delay)),
            })
            .collect();
        let delay = Tier {
            delay: policy.redeliver_after,
            queue: format!("{queue}.delay.{}ms", ms(policy.redeliver_after)),
        };
        Ok(Self {
            exchange: format!("{queue}.exchange"),
            queue: queue.to_owned(),
            tiers,
            delay,
            dead_letter: format!("{queue}.dlq"),
            policy,
        })
    }

    /// The exchange producers publish to (routing key: the work queue's name).
    pub fn exchange(&self) -> &str {
        &self.exchange
    }

    /// The work queue.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// The retry tiers, shortest delay first.
    pub fn tiers(&self) -> &[Tier] {
        &self.tiers
    }

    /// The tier for redeliveries that do not count as attempts.
    pub fn delay_tier(&self) -> &Tier {
        &self.delay
    }

    /// The dead-letter queue.
    pub fn dead_letter_queue(&self) -> &str {
        &self.dead_letter
    }

    /// The retry policy the tiers were made from.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// The queue that holds a retry back for `delay`: the shortest tier at least that long,
    /// else the longest (the policy only asks for its own delays, so this is exact).
    pub fn tier_for(&self, delay: Duration) -> &Tier {
        self.tiers
            .iter()
            .find(|t| t.delay >= delay)
            .or(self.tiers.last())
            .unwrap_or(&self.delay)
    }

    /// Every queue of this topology, the work queue first.
    pub fn queues(&self) -> impl Iterator<Item = &str> {
        [self.queue.as_str(), self.delay.queue.as_str()]
            .into_iter()
            .chain(self.tiers.iter().map(|t| t.queue.as_str()))
            .chain([self.dead_letter.as_str()])
    }

    /// Declares the exchange and every queue (durable), and binds the work queue.
    /// Idempotent: declaring an existing topology again changes nothing.
    pub async fn declare(&self, channel: &Channel) -> Result<(), AmqpError> {
        let durable = QueueDeclareOptions::durable();
        channel
            .exchange_declare(
                self.exchange.as_str().into(),
                ExchangeKind::Direct,
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        // Anything the broker itself dead-letters from the work queue (a reject, a nack)
        // lands in the DLQ rather than vanishing.
        let mut work = FieldTable::default();
        work.insert("x-dead-letter-exchange".into(), string(""));
        work.insert(
            "x-dead-letter-routing-key".into(),
            string(&self.dead_letter),
        );
        channel
            .queue_declare(self.queue.as_str().into(), durable, work)
            .await?;
        channel
            .queue_bind(
                self.queue.as_str().into(),
                self.exchange.as_str().into(),
                self.queue.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        for tier in self.tiers.iter().chain([&self.delay]) {
            let mut args = FieldTable::default();
            let ttl = i64::try_from(tier.delay.as_millis()).unwrap_or(i64::MAX);
            args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ttl));
            args.insert("x-dead-letter-exchange".into(), string(&self.exchange));
            args.insert("x-dead-letter-routing-key".into(), string(&self.queue));
            channel
                .queue_declare(tier.queue.as_str().into(), durable, args)
                .await?;
        }
        channel
            .queue_declare(
                self.dead_letter.as_str().into(),
                durable,
                FieldTable::default(),
            )
            .await?;
        Ok(())
    }

    /// Deletes every queue and the exchange (for tests and teardown).
    pub async fn delete(&self, channel: &Channel) -> Result<(), AmqpError> {
        for q in self.queues() {
            channel
                .queue_delete(q.into(), QueueDeleteOptions::default())
                .await?;
        }
        channel
            .exchange_delete(self.exchange.as_str().into(), Default::default())
            .await?;
        Ok(())
    }
}

fn string(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

/// Checks a base name for queues and exchanges.
pub(crate) fn validate_name(name: &str) -> Result<(), AmqpError> {
    let bad = |why| Err(AmqpError::InvalidName(name.chars().take(64).collect(), why));
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return bad("use 1 to 200 bytes");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b))
    {
        return bad("use only A-Z a-z 0-9 _ - . :");
    }
    if name.starts_with("amq.") {
        return bad("names starting with amq. are reserved by RabbitMQ");
    }
    Ok(())
}

/// A short string that fits AMQP's 255-byte limit.
pub(crate) fn short(s: &str) -> Result<ShortString, AmqpError> {
    ShortString::try_new(s)
        .map_err(|_| AmqpError::InvalidName(s.chars().take(64).collect(), "longer than 255 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_derive_from_the_queue_and_the_policy() {
        let t = Topology::new("orders", RetryPolicy::default()).unwrap();
        assert_eq!(t.exchange(), "orders.exchange");
        assert_eq!(t.dead_letter_queue(), "orders.dlq");
        assert_eq!(t.delay_tier().queue, "orders.delay.1000ms");
        let tiers: Vec<&str> = t.tiers().iter().map(|t| t.queue.as_str()).collect();
        assert_eq!(
            tiers,
            [
                "orders.retry.3000ms",
                "orders.retry.6000ms",
                "orders.retry.12000ms",
                "orders.retry.24000ms"
            ]
        );
        assert_eq!(
            t.tier_for(Duration::from_secs(6)).queue,
            "orders.retry.6000ms"
        );
        assert_eq!(
            t.tier_for(Duration::from_secs(99)).queue,
            "orders.retry.24000ms"
        );
    }

    #[test]
    fn capped_delays_share_a_tier() {
        let p = RetryPolicy {
            max_attempts: 10,
            max_interval: Duration::from_secs(10),
            ..RetryPolicy::default()
        };
        let t = Topology::new("q", p).unwrap();
        assert_eq!(t.tiers().len(), 3); // 3 s, 6 s, 10 s
    }

    #[test]
    fn bad_names_are_refused() {
        for bad in ["", "a b", "amq.x", "q/x", "é", &"x".repeat(201)] {
            assert!(
                Topology::new(bad, RetryPolicy::default()).is_err(),
                "{bad:?}"
            );
        }
        assert!(Topology::new("orders-v2.eu:1_a", RetryPolicy::default()).is_ok());
    }
}
