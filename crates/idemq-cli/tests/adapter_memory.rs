//! The adapter conformance suite on the demo's in-memory broker.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use idemq_cli::demo::broker::memory::{MemoryBroker, MemoryFaults};
use idemq_cli::demo::broker::{Broker as _, Outgoing};
use idemq_conformance::adapter::{within, Broker, DeadLettered, Lane};
use idemq_consumer::Consumer;
use idemq_core::adapter::RetryPolicy;

struct Memory;

struct MemoryLane {
    broker: MemoryBroker,
    policy: RetryPolicy,
    dead_seen: AtomicUsize,
}

impl Broker for Memory {
    type Lane = MemoryLane;

    async fn lane(&self, policy: RetryPolicy) -> MemoryLane {
        // No lost acks, and a visibility timeout longer than any rule: what comes back is
        // what a closed session gave back, or what the consumer put back.
        let broker = MemoryBroker::new(MemoryFaults {
            lost_acks: 0.0,
            visibility: Duration::from_secs(60),
            seed: 1,
            prefetch: 64,
        });
        MemoryLane {
            broker,
            policy,
            dead_seen: AtomicUsize::new(0),
        }
    }
}

impl Lane for MemoryLane {
    type Source = MemoryBroker;

    fn consumer(&self) -> Consumer<MemoryBroker> {
        Consumer::new(self.broker.clone(), self.policy.clone())
    }

    async fn publish(&self, id: Option<&str>, payload: &[u8]) {
        let msg = Outgoing {
            message_id: id.unwrap_or_default().to_owned(),
            payload: Bytes::copy_from_slice(payload),
            delay: Duration::ZERO,
        };
        self.broker.publish(msg).await.unwrap();
    }

    async fn dead_letter(&self) -> DeadLettered {
        let seen = self.dead_seen.fetch_add(1, Ordering::SeqCst);
        let d = within("a dead letter", self.broker.next_dead_letter(seen)).await;
        DeadLettered {
            message_id: Some(d.message_id).filter(|id| !id.is_empty()),
            reason: d.reason.to_owned(),
            error: d.error,
            attempts: d.attempts,
            original: self.name(),
            first_failure: d.first_failure,
            last_failure: d.last_failure,
        }
    }

    fn name(&self) -> String {
        "memory".into()
    }
}

idemq_conformance::adapter_conformance! {
    broker: async { Memory },
}
