//! An in-process at-least-once broker, with the faults real brokers have.
//!
//! A delivered message stays invisible for a visibility timeout; if it is not settled by
//! then — its consumer crashed, or its ack was lost — it is delivered again. Acks are lost
//! with a configured probability. A delivery that is dropped without being settled behaves
//! exactly like one whose consumer died.
//!
//! It is a [`Source`] of the consumer runtime: each session is a "connection". Closing one
//! puts its unsettled messages back at once, as a broker does for a closed connection, and
//! the deliveries it had handed out can no longer be settled.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use idemq_consumer::{Closer, Session, Source};
use idemq_core::adapter::{DeadLetterReason, Delivery};
use idemq_core::time::now_ms;
use idemq_core::Message;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{Broker, BrokerError, Outgoing};
use crate::demo::chance::Chance;

/// The most deliveries one receive hands out together.
const MAX_BATCH: usize = 32;

/// A settlement the broker refused.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// The delivery's session was closed: the broker had put the message back already.
    #[error("the session of this delivery was closed")]
    SessionClosed,
}

/// A message parked on the dead-letter list, with what the consumer said of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The message id.
    pub message_id: String,
    /// The reason's short name.
    pub reason: &'static str,
    /// The reason in words.
    pub error: String,
    /// Attempts made.
    pub attempts: u32,
    /// Unix ms of the first handler failure (of the dead-lettering, when none failed).
    pub first_failure: i64,
    /// Unix ms of the dead-lettering.
    pub last_failure: i64,
}

/// The faults of the in-memory broker.
#[derive(Debug, Clone, Copy)]
pub struct MemoryFaults {
    /// The fraction of acks the broker loses: the message is delivered again later.
    pub lost_acks: f64,
    /// How long a delivered, unsettled message stays invisible.
    pub visibility: Duration,
    /// The seed of the lost-ack dice.
    pub seed: u64,
    /// How many unsettled deliveries one session holds at most, as a prefetch does.
    pub prefetch: usize,
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
    // Woken on every dead letter.
    dead: Notify,
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
    dead_letters: Vec<DeadLetter>,
    next_session: u64,
    // Open sessions and how many unsettled deliveries each holds.
    open_sessions: HashMap<u64, usize>,
}

#[derive(Debug)]
struct Stored {
    message_id: String,
    payload: Bytes,
    attempt: u32,
    first_failure: Option<i64>,
    status: Status,
}

#[derive(Debug, Clone, Copy)]
enum Status {
    Ready,
    Delayed,
    InFlight {
        tag: u64,
        until: Instant,
        session: u64,
    },
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
                    next_session: 0,
                    open_sessions: HashMap::new(),
                }),
                wake: Notify::new(),
                dead: Notify::new(),
                faults,
            }),
        }
    }

    /// No more messages will be published: sessions receive `None` once every
    /// message is settled.
    pub fn close(&self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_waiters();
    }

    /// What the broker did so far.
    pub fn stats(&self) -> MemoryStats {
        self.shared.lock().stats
    }

    /// The dead-lettered messages so far.
    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        self.shared.lock().dead_letters.clone()
    }

    /// Waits until more than `seen` messages were dead-lettered; returns the next one.
    pub async fn next_dead_letter(&self, seen: usize) -> DeadLetter {
        loop {
            let dead = self.shared.dead.notified();
            tokio::pin!(dead);
            dead.as_mut().enable();
            if let Some(d) = self.shared.lock().dead_letters.get(seen) {
                return d.clone();
            }
            dead.await;
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Settles delivery `tag` of message `id` with `f`, unless the delivery is stale.
    fn settle(
        &self,
        id: u64,
        tag: u64,
        session: u64,
        f: impl FnOnce(&mut State, Stored),
    ) -> Result<(), MemoryError> {
        let mut st = self.lock();
        if !st.open_sessions.contains_key(&session) {
            return Err(MemoryError::SessionClosed);
        }
        let current = st.messages.get(&id).map(|m| m.status);
        match current {
            Some(Status::InFlight { tag: t, until, .. }) if t == tag => {
                st.timers.remove(&(until, id));
                st.unhold(session);
                let stored = st.messages.remove(&id).expect("checked above");
                f(&mut st, stored);
            }
            // Timed out and redelivered (or settled by the newer delivery): this consumer
            // no longer owns the message, as with a broker's expired receipt handle.
            _ => st.stats.stale += 1,
        }
        drop(st);
        self.wake.notify_waiters();
        Ok(())
    }

    /// Closes a session: its unsettled messages are ready again at once.
    fn close_session(&self, session: u64) {
        let mut st = self.lock();
        if st.open_sessions.remove(&session).is_none() {
            return;
        }
        let held: Vec<(u64, Instant)> = st
            .messages
            .iter()
            .filter_map(|(&id, m)| match m.status {
                Status::InFlight {
                    until, session: s, ..
                } if s == session => Some((id, until)),
                _ => None,
            })
            .collect();
        for (id, until) in held {
            st.timers.remove(&(until, id));
            st.messages.get_mut(&id).expect("listed above").status = Status::Ready;
            st.ready.push_back(id);
        }
        drop(st);
        self.wake.notify_waiters();
    }

    /// Hands out the ready messages (up to [`MAX_BATCH`] and the prefetch) to `session`,
    /// waiting for one; `None` once the broker is closed and every message settled.
    async fn recv(
        self: &Arc<Self>,
        session: u64,
    ) -> Result<Option<Vec<MemoryDelivery>>, MemoryError> {
        loop {
            let notified = self.wake.notified();
            tokio::pin!(notified);
            // Registered before looking, so a change made after the look still wakes us.
            notified.as_mut().enable();
            let now = Instant::now();
            let next_timer = {
                let mut st = self.lock();
                st.promote(now);
                let mut out = Vec::new();
                let Some(&held) = st.open_sessions.get(&session) else {
                    return Err(MemoryError::SessionClosed);
                };
                let room = self.faults.prefetch.saturating_sub(held).min(MAX_BATCH);
                while out.len() < room {
                    let Some(id) = st.ready.pop_front() else {
                        break;
                    };
                    *st.open_sessions.get_mut(&session).expect("checked above") += 1;
                    let tag = st.next_tag;
                    st.next_tag += 1;
                    st.stats.deliveries += 1;
                    let until = now + self.faults.visibility;
                    st.timers.insert((until, id));
                    let m = st.messages.get_mut(&id).expect("ready messages are live");
                    m.status = Status::InFlight {
                        tag,
                        until,
                        session,
                    };
                    out.push(MemoryDelivery {
                        shared: self.clone(),
                        id,
                        tag,
                        session,
                        attempt: m.attempt,
                        message_id: m.message_id.clone(),
                        payload: m.payload.clone(),
                    });
                }
                if !out.is_empty() {
                    return Ok(Some(out));
                }
                if st.closed && st.messages.is_empty() {
                    return Ok(None);
                }
                st.timers.first().map(|&(at, _)| at)
            };
            match next_timer {
                Some(at) => {
                    tokio::select! {
                        _ = notified => {}
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
                None => notified.await,
            }
        }
    }
}

impl State {
    /// One delivery of `session` is no longer in flight.
    fn unhold(&mut self, session: u64) {
        if let Some(held) = self.open_sessions.get_mut(&session) {
            *held = held.saturating_sub(1);
        }
    }

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
            let was = std::mem::replace(&mut m.status, Status::Ready);
            if let Status::InFlight { session, .. } = was {
                self.stats.timeouts += 1;
                self.unhold(session);
            }
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
    type Source = MemoryBroker;

    async fn publish(&self, msg: Outgoing) -> Result<(), BrokerError> {
        let mut st = self.shared.lock();
        let id = st.next_id;
        st.next_id += 1;
        st.stats.published += 1;
        let stored = Stored {
            message_id: msg.message_id,
            payload: msg.payload,
            attempt: 1,
            first_failure: None,
            status: Status::Ready,
        };
        st.schedule(id, stored, msg.delay, Instant::now());
        drop(st);
        self.shared.wake.notify_waiters();
        Ok(())
    }

    fn source(&self) -> MemoryBroker {
        self.clone()
    }
}

impl Source for MemoryBroker {
    type Delivery = MemoryDelivery;
    type Error = MemoryError;
    type Session = MemorySession;

    async fn open(&self) -> Result<MemorySession, MemoryError> {
        let mut st = self.shared.lock();
        let id = st.next_session;
        st.next_session += 1;
        st.open_sessions.insert(id, 0);
        Ok(MemorySession {
            shared: self.shared.clone(),
            id,
        })
    }
}

/// One "connection" to the in-memory broker.
#[derive(Debug)]
pub struct MemorySession {
    shared: Arc<Shared>,
    id: u64,
}

impl Session for MemorySession {
    type Delivery = MemoryDelivery;
    type Error = MemoryError;

    /// Cancel-safe: messages are handed out under the lock, with no wait in between. A
    /// closed session errs at once.
    async fn recv(&mut self) -> Result<Option<Vec<MemoryDelivery>>, MemoryError> {
        self.shared.recv(self.id).await
    }

    fn closer(&self) -> Closer {
        let (shared, id) = (self.shared.clone(), self.id);
        Closer::new(move || {
            shared.close_session(id);
            async {}
        })
    }
}

/// One delivery of the in-memory broker.
#[derive(Debug)]
pub struct MemoryDelivery {
    shared: Arc<Shared>,
    id: u64,
    tag: u64,
    session: u64,
    attempt: u32,
    message_id: String,
    payload: Bytes,
}

impl Message for MemoryDelivery {
    fn payload(&self) -> &[u8] {
        &self.payload
    }
    /// The producer's message id; an empty one reads as none.
    fn message_id(&self) -> Option<&str> {
        Some(self.message_id.as_str()).filter(|id| !id.is_empty())
    }
}

impl Delivery for MemoryDelivery {
    type Error = MemoryError;

    fn attempt(&self) -> u32 {
        self.attempt
    }

    async fn ack(self) -> Result<(), MemoryError> {
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
        if lost {
            return Ok(());
        }
        self.shared
            .settle(self.id, self.tag, self.session, |st, _| st.stats.acked += 1)
    }

    async fn redeliver(
        self,
        delay: Duration,
        attempt: u32,
        error: Option<&str>,
    ) -> Result<(), MemoryError> {
        let id = self.id;
        let failed = error.is_some();
        self.shared
            .settle(id, self.tag, self.session, |st, mut stored| {
                stored.attempt = attempt;
                if failed && stored.first_failure.is_none() {
                    stored.first_failure = Some(now_ms());
                }
                st.schedule(id, stored, delay, Instant::now());
            })
    }

    async fn dead_letter(self, reason: &DeadLetterReason) -> Result<(), MemoryError> {
        let attempts = match reason {
            DeadLetterReason::RetriesExhausted { attempts, .. } => *attempts,
            _ => self.attempt,
        };
        let settled = self
            .shared
            .settle(self.id, self.tag, self.session, |st, stored| {
                let now = now_ms();
                st.stats.dead_lettered += 1;
                st.dead_letters.push(DeadLetter {
                    message_id: stored.message_id,
                    reason: reason.kind(),
                    error: reason.to_string(),
                    attempts,
                    first_failure: stored.first_failure.unwrap_or(now),
                    last_failure: now,
                });
            });
        self.shared.dead.notify_waiters();
        settled
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
            prefetch: 8,
        })
    }

    fn msg(id: &str, delay_ms: u64) -> Outgoing {
        Outgoing {
            message_id: id.into(),
            payload: Bytes::from(id.to_owned()),
            delay: Duration::from_millis(delay_ms),
        }
    }

    async fn next(s: &mut MemorySession) -> MemoryDelivery {
        let mut got = tokio::time::timeout(Duration::from_secs(5), s.recv())
            .await
            .expect("a delivery within 5 s")
            .unwrap()
            .expect("not finished");
        assert_eq!(got.len(), 1, "one ready message at a time here");
        got.pop().unwrap()
    }

    #[tokio::test]
    async fn unsettled_deliveries_come_back_after_the_visibility_timeout() {
        let b = broker(0.0);
        let mut s = b.open().await.unwrap();
        b.publish(msg("a", 0)).await.unwrap();
        b.close();
        let first = next(&mut s).await;
        drop(first); // the consumer died
        let again = next(&mut s).await;
        assert_eq!(again.message_id(), Some("a"));
        assert_eq!(again.attempt(), 1);
        again.ack().await.unwrap();
        assert!(s.recv().await.unwrap().is_none(), "closed and drained");
        let st = b.stats();
        assert_eq!((st.deliveries, st.timeouts, st.acked), (2, 1, 1));
    }

    #[tokio::test]
    async fn redeliveries_carry_their_attempt_and_wait_their_delay() {
        let b = broker(0.0);
        let mut s = b.open().await.unwrap();
        b.publish(msg("a", 0)).await.unwrap();
        let d = next(&mut s).await;
        d.redeliver(Duration::from_millis(30), 2, Some("boom"))
            .await
            .unwrap();
        assert_eq!(b.stats().deliveries, 1, "held back for its delay");
        let again = next(&mut s).await;
        assert_eq!(again.attempt(), 2);
        again
            .dead_letter(&DeadLetterReason::RetriesExhausted {
                attempts: 2,
                last_error: "boom".into(),
            })
            .await
            .unwrap();
        let dead = b.next_dead_letter(0).await;
        assert_eq!((dead.reason, dead.attempts), ("retries-exhausted", 2));
        assert!(dead.first_failure <= dead.last_failure);
    }

    #[tokio::test]
    async fn lost_acks_redeliver_and_delays_hold_messages_back() {
        let b = broker(1.0 - f64::EPSILON);
        let mut s = b.open().await.unwrap();
        b.publish(msg("a", 0)).await.unwrap();
        let d = next(&mut s).await;
        d.ack().await.unwrap(); // lost
        let again = next(&mut s).await;
        assert_eq!(b.stats().lost_acks, 1);
        assert_eq!(b.stats().timeouts, 1);
        drop(again);
        // A delayed publish is held back until its time.
        let b = broker(0.0);
        let mut s = b.open().await.unwrap();
        b.publish(msg("late", 40)).await.unwrap();
        b.publish(msg("now", 0)).await.unwrap();
        assert_eq!(next(&mut s).await.message_id(), Some("now"));
        let late = next(&mut s).await;
        assert_eq!(late.message_id(), Some("late"));
    }

    #[tokio::test]
    async fn a_closed_session_gives_its_messages_back_and_refuses_their_settling() {
        let b = broker(0.0);
        let mut s = b.open().await.unwrap();
        b.publish(msg("a", 0)).await.unwrap();
        let d = next(&mut s).await;
        s.closer().close().await;
        assert!(matches!(d.ack().await, Err(MemoryError::SessionClosed)));
        assert!(s.recv().await.is_err(), "the session is dead");
        let mut other = b.open().await.unwrap();
        let again = next(&mut other).await;
        assert_eq!(again.message_id(), Some("a"));
        assert_eq!(
            b.stats().timeouts,
            0,
            "given back at once, not after a timeout"
        );
        again.ack().await.unwrap();
    }
}
