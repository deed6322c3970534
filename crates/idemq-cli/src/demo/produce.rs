//! The producing side: place the orders, then publish them the way an at-least-once
//! producer does — with retried sends that reach the broker twice.

use std::time::Duration;

use super::broker::{Broker, Outgoing};
use super::chance::Chance;
use super::story::{orders, BusinessDb, Order};
use super::{DemoConfig, DemoError};
use crate::url::BrokerUrl;

/// What a producer publishes: every order once, plus extra copies.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The messages, in publishing order.
    pub messages: Vec<Outgoing>,
    /// How many orders.
    pub orders: u64,
    /// How many of the messages are extra copies.
    pub copies: u64,
}

/// Plans the messages for `orders`: `duplicates × orders` extra copies of random orders,
/// each with a new message id as a producer retry would have, the whole lot shuffled, and
/// half the copies held back by up to `max_delay`.
pub fn plan(orders: &[Order], duplicates: f64, max_delay: Duration, chance: &mut Chance) -> Plan {
    let n = orders.len() as u64;
    let copies = if n == 0 {
        0
    } else {
        (n as f64 * duplicates).round() as u64
    };
    let mut messages: Vec<Outgoing> = orders
        .iter()
        .map(|o| Outgoing {
            message_id: format!("{}/send-1", o.order_id),
            payload: o.encode(),
            delay: Duration::ZERO,
        })
        .collect();
    let mut sends = vec![1u32; orders.len()];
    for _ in 0..copies {
        let i = chance.below(n) as usize;
        sends[i] += 1;
        let delay = if chance.happens(0.5) {
            max_delay.mul_f64(chance.unit())
        } else {
            Duration::ZERO
        };
        messages.push(Outgoing {
            message_id: format!("{}/send-{}", orders[i].order_id, sends[i]),
            payload: orders[i].encode(),
            delay,
        });
    }
    chance.shuffle(&mut messages);
    Plan {
        messages,
        orders: n,
        copies,
    }
}

/// Creates the business schema if missing, places the orders and publishes them.
pub async fn produce<B: Broker>(
    broker: &B,
    db: &BusinessDb,
    cfg: &DemoConfig,
) -> Result<Plan, DemoError> {
    let orders = orders(cfg.orders);
    db.create_schema().await?;
    db.place_orders(&cfg.topic, &orders).await?;
    let mut chance = Chance::fork(cfg.seed, u64::MAX);
    let plan = plan(
        &orders,
        cfg.duplicates,
        cfg.timing.max_duplicate_delay,
        &mut chance,
    );
    for msg in &plan.messages {
        broker.publish(msg.clone()).await?;
    }
    Ok(plan)
}

/// `demo produce`: places and publishes the orders on the broker `cfg.broker` names.
/// Broker adapters plug in here, each with its own [`Broker`].
pub async fn produce_on(cfg: &DemoConfig) -> Result<Plan, DemoError> {
    cfg.validate()?;
    match &cfg.broker {
        BrokerUrl::Memory => Err(DemoError::NeedsRealBroker { command: "produce" }),
        BrokerUrl::Amqp(url) => {
            let broker =
                super::broker::amqp::AmqpBroker::connect(url, &cfg.topic, &cfg.timing.retry, 1)
                    .await?;
            let db = BusinessDb::open(&cfg.db, 2).await?;
            produce(&broker, &db, cfg).await
        }
        BrokerUrl::RocketMq(url) => {
            let broker = super::broker::rocketmq::RocketBroker::connect(
                url,
                &cfg.topic,
                &cfg.timing.retry,
                1,
            )
            .await?;
            let db = BusinessDb::open(&cfg.db, 2).await?;
            let plan = produce(&broker, &db, cfg).await;
            broker.shutdown().await;
            plan
        }
        BrokerUrl::Kafka(url) => {
            let broker =
                super::broker::kafka::KafkaBroker::connect(url, &cfg.topic, &cfg.timing.retry, 1)
                    .await?;
            let db = BusinessDb::open(&cfg.db, 2).await?;
            produce(&broker, &db, cfg).await
        }
        other => Err(super::broker::not_plugged_in(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_publish_every_order_plus_the_copies() {
        let orders = super::orders(100);
        let p = plan(
            &orders,
            0.3,
            Duration::from_millis(100),
            &mut Chance::new(5),
        );
        assert_eq!((p.orders, p.copies, p.messages.len()), (100, 30, 130));
        let mut ids: Vec<_> = p.messages.iter().map(|m| &m.message_id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 130, "every send has its own message id");
        for o in &orders {
            assert!(p.messages.iter().any(|m| m.payload == o.encode()));
        }
        assert!(p.messages.iter().any(|m| !m.delay.is_zero()));
    }
}
