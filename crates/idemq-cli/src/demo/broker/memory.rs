//! An in-process at-least-once broker, with the faults real brokers have.
//!
//! A delivered message stays invisible for a visibility timeout; if it is not settled by
//! then — its consumer crashed, or its ack was lost — it is delivered again. Acks are lost
//! with a configured probability. A delivery that is dropped without being settled behaves
//! exactly like one whose consumer died.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use idemq_core::adapter::{DeadLetterReason, Delivery};
use idemq_core::Message;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{Broker, BrokerError, Outgoing, Received};
use crate::demo::chance::Chance;

/// The faults of the in-memory broker.
#[derive(Debug, Clone, Copy)]
pub struct MemoryFaults {
    /// The fraction of acks the broker loses: the message is delivered again later.
    pub lost_acks: f64,
    /// How long a delivered, unsettled message stays invisible.
    pub visibility: Duration,
    /// The seed of the lost-ack dice.
    pub seed: u64,
}

/// What the broker did, for the demo's report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryStats {
    /// Messages published.
    pub published: u64,
    /// Deliveries handed to consumers.
    pub deliveries: u64,
    /// Messages delivered again because their visibility timeout ran out.
    pub timeouts: u64,
    /// Acks the broker lost on purpose.
    pub lost_acks: u64,
    /// Messages acked and removed.
    pub acked: u64,
    /// Messages parked on the dead-letter list.
    pub dead_lettered: u64,
    /// Settlements of a delivery that had already timed out (its message was redelivered).
    pub stale: u64,
}

impl MemoryStats {
    /// Messages settled for good: acked or dead-lettered.
    pub fn settled(&self) -> u64 {
        self.acked + self.dead_lettered
    }
}

/// The in-memory broker: one queue. Cheap to clone.
#[derive(Debug, Clone)]
pub struct MemoryBroker {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    // Woken on every change, so waiting receivers look again (for a message, a closed and
    // drained queue, or an earlier timer).
    wake: Notify,
    faults: MemoryFaults,
}

#[derive(Debug)]
struct State {
    messages: HashMap<u64, Stored>,
    ready: VecDeque<u64>,
    // Deadlines of delayed and in-flight messages; every entry matches its message's status.
    timers: BTreeSet<(Instant, u64)>,
    next_id: u64,
    next_tag: u64,
    closed: bool,
    chance: Chance,
    stats: MemoryStats,
    dead_letters: Vec<(String, String)>,
}

#[derive(Debug)]
struct Stored {
    message_id: String,
    payload: Bytes,
    attempt: u32,
    status: Status,
}

#[derive(Debug, Clone, Copy)]
enum Status {
    Ready,
    Delayed,
    InFlight { tag: u64, until: Instant },
}

impl MemoryBroker {
    /// An empty broker with these faults.
    pub fn new(faults: MemoryFaults) -> Self {
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    messages: HashMap::new(),
                    ready: VecDeque::new(),
                    timers: BTreeSet::new(),
                    next_id: 0,
                    next_tag: 0,
                    closed: false,
                    chance: Chance::new(faults.seed),
                    stats: MemoryStats::default(),
                    dead_letters: Vec::new(),
                }),
                wake: Notify::new(),
                faults,
            }),
        }
    }

    /// No more messages will be published: receivers get [`Received::Closed`] once every
    /// message is settled.
    pub fn close(&self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_waiters();
    }

    /// What the broker did so far.
    pub fn stats(&self) -> MemoryStats {
        self.shared.lock().stats
    }

    /// The dead-lettered messages: message id and reason.
    pub fn dead_letters(&self) -> Vec<(String, String)> {
        self.shared.lock().dead_letters.clone()
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Settles delivery `tag` of message `id` with `f`, unless the delivery is stale.
    fn settle(&self, id: u64, tag: u64, f: impl FnOnce(&mut State, Stored)) {
        let mut st = self.lock();
        let current = st.messages.get(&id).map(|m| m.status);
        match current {
            Some(Status::InFlight { tag: t, until }) if t == tag => {
                st.timers.remove(&(until, id));
                let stored = st.messages.remove(&id).expect("checked above");
                f(&mut st, stored);
            }
            // Timed out and redelivered (or settled by the newer delivery): this consumer
            // no longer owns the message, as with a broker's expired receipt handle.
            _ => st.stats.stale += 1,
        }
        drop(st);
        self.wake.notify_waiters();
    }
}

impl State {
    /// Moves every due timer: a delayed message becomes ready, an in-flight one whose
    /// visibility ran out is delivered again.
    fn promote(&mut self, now: Instant) {
        while let Some(&(at, id)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            let m = self
                .messages
                .get_mut(&id)
                .expect("timers track live messages");
            if matches!(m.status, Status::InFlight { .. }) {
                self.stats.timeouts += 1;
            }
            m.status = Status::Ready;
            self.ready.push_back(id);
        }
    }

    fn schedule(&mut self, id: u64, stored: Stored, delay: Duration, now: Instant) {
        let mut stored = stored;
        if delay.is_zero() {
            stored.status = Status::Ready;
            self.ready.push_back(id);
        } else {
            let at = now + delay;
            stored.status = Status::Delayed;
            self.timers.insert((at, id));
        }
        self.messages.insert(id, stored);
    }
}

impl Broker for MemoryBroker {
    type Delivery = MemoryDelivery;

    async fn publish(&self, msg: Outgoing) -> Result<(), BrokerError> {
        let mut st = self.shared.lock();
        let id = st.next_id;
        st.next_id += 1;
        st.stats.published += 1;
        let stored = Stored {
            message_id: msg.message_id,
            payload: msg.payload,
            attempt: 1,
            status: Status::Ready,
        };
        st.schedule(id, stored, msg.delay, Instant::now());
        drop(st);
        self.shared.wake.notify_waiters();
        Ok(())
    }

    async fn recv(&self, wait: Duration) -> Result<Received<MemoryDelivery>, BrokerError> {
        let deadline = Instant::now() + wait;
        loop {
            let notified = self.shared.wake.notified();
            tokio::pin!(notified);
            // Registered before looking, so a change made after the look still wakes us.
            notified.as_mut().enable();
            let now = Instant::now();
            let next_timer = {
                let mut st = self.shared.lock();
                st.promote(now);
                if let Some(id) = st.ready.pop_front() {
                    let tag = st.next_tag;
                    st.next_tag += 1;
                    st.stats.deliveries += 1;
                    let until = now + self.shared.faults.visibility;
                    st.timers.insert((until, id));
                    let m = st.messages.get_mut(&id).expect("ready messages are live");
                    m.status = Status::InFlight { tag, until };
                    return Ok(Received::Delivery(MemoryDelivery {
                        shared: self.shared.clone(),
                        id,
                        tag,
                        attempt: m.attempt,
                        message_id: m.message_id.clone(),
                        payload: m.payload.clone(),
                    }));
                }
                if st.closed && st.messages.is_empty() {
                    return Ok(Received::Closed);
                }
                st.timers.first().map(|&(at, _)| at)
            };
            if now >= deadline {
                return Ok(Received::Idle);
            }
            let until = next_timer.map_or(deadline, |t| t.min(deadline));
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(until) => {}
            }
        }
    }
}

/// One delivery of the in-memory broker.
#[derive(Debug)]
pub struct MemoryDelivery {
    shared: Arc<Shared>,
    id: u64,
    tag: u64,
    attempt: u32,
    message_id: String,
    payload: Bytes,
}

impl Message for MemoryDelivery {
    fn payload(&self) -> &[u8] {
        &self.payload
    }
    fn message_id(&self) -> Option<&str> {
        Some(&self.message_id)
    }
}

impl Delivery for MemoryDelivery {
    type Error = Infallible;

    fn attempt(&self) -> u32 {
        self.attempt
    }

    async fn ack(self) -> Result<(), Infallible> {
        let lost = {
            let mut st = self.shared.lock();
            let p = self.shared.faults.lost_acks;
            let lost = p > 0.0 && st.chance.happens(p);
            if lost {
                st.stats.lost_acks += 1;
            }
            lost
        };
        // A lost ack leaves the message in flight; its visibility timeout redelivers it.
        if !lost {
            self.shared
                .settle(self.id, self.tag, |st, _| st.stats.acked += 1);
        }
        Ok(())
    }

    async fn redeliver(
        self,
        delay: Duration,
        attempt: u32,
        _error: Option<&str>,
    ) -> Result<(), Infallible> {
        let id = self.id;
        self.shared.settle(id, self.tag, |st, mut stored| {
            stored.attempt = attempt;
            st.schedule(id, stored, delay, Instant::now());
        });
        Ok(())
    }

    async fn dead_letter(self, reason: &DeadLetterReason) -> Result<(), Infallible> {
        let reason = reason.to_string();
        self.shared.settle(self.id, self.tag, |st, stored| {
            st.stats.dead_lettered += 1;
            st.dead_letters.push((stored.message_id, reason));
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker(lost_acks: f64) -> MemoryBroker {
        MemoryBroker::new(MemoryFaults {
            lost_acks,
            visibility: Duration::from_millis(50),
            seed: 3,
        })
    }

    fn msg(id: &str, delay_ms: u64) -> Outgoing {
        Outgoing {
            message_id: id.into(),
            payload: Bytes::from(id.to_owned()),
            delay: Duration::from_millis(delay_ms),
        }
    }

    async fn next(b: &MemoryBroker) -> MemoryDelivery {
        match b.recv(Duration::from_secs(5)).await.unwrap() {
            Received::Delivery(d) => d,
            other => panic!("expected a delivery, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn unsettled_deliveries_come_back_after_the_visibility_timeout() {
        let b = broker(0.0);
        b.publish(msg("a", 0)).await.unwrap();
        b.close();
        let first = next(&b).await;
        drop(first); // the consumer died
        let again = next(&b).await;
        assert_eq!(again.message_id(), Some("a"));
        assert_eq!(again.attempt(), 1);
        again.ack().await.unwrap();
        assert!(matches!(
            b.recv(Duration::from_secs(5)).await.unwrap(),
            Received::Closed
        ));
        let s = b.stats();
        assert_eq!((s.deliveries, s.timeouts, s.acked), (2, 1, 1));
    }

    #[tokio::test]
    async fn redeliveries_carry_their_attempt_and_wait_their_delay() {
        let b = broker(0.0);
        b.publish(msg("a", 0)).await.unwrap();
        let d = next(&b).await;
        d.redeliver(Duration::from_millis(30), 2, Some("boom"))
            .await
            .unwrap();
        assert!(matches!(
            b.recv(Duration::from_millis(1)).await.unwrap(),
            Received::Idle
        ));
        let again = next(&b).await;
        assert_eq!(again.attempt(), 2);
        again
            .dead_letter(&DeadLetterReason::Conflict {
                existing: idemq_core::Fingerprint::of(b"a"),
                incoming: None,
            })
            .await
            .unwrap();
        assert_eq!(b.dead_letters().len(), 1);
    }

    #[tokio::test]
    async fn lost_acks_redeliver_and_stale_settlements_are_ignored() {
        let b = broker(1.0 - f64::EPSILON);
        b.publish(msg("a", 0)).await.unwrap();
        let d = next(&b).await;
        d.ack().await.unwrap(); // lost
        let again = next(&b).await;
        assert_eq!(b.stats().lost_acks, 1);
        assert_eq!(b.stats().timeouts, 1);
        drop(again);
        // A delayed publish is held back until its time.
        let b = broker(0.0);
        b.publish(msg("late", 40)).await.unwrap();
        b.publish(msg("now", 0)).await.unwrap();
        assert_eq!(next(&b).await.message_id(), Some("now"));
        let late = next(&b).await;
        assert_eq!(late.message_id(), Some("late"));
    }
}
