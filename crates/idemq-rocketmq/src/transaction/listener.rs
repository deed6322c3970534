//! The bridge from the client's synchronous transaction listener to the async log.
//!
//! The client calls both methods on its blocking lane, so they may block; they never run
//! SQL themselves. The local transaction runs in `send_in_transaction`'s own future (the
//! listener only hands it the go-ahead and waits for the outcome), and a check-back runs
//! on the application's runtime (the listener waits for its answer, up to a timeout).

use std::any::Any;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cheetah_string::CheetahString;
use idemq_core::time::now_ms;
use idemq_sql::{TxEntry, TxLog, TxState};
use rocketmq_client_rust::{LocalTransactionState, TransactionListener};
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::{MessageConst, MessageTrait};
use tokio::runtime::Handle;
use tokio::sync::oneshot;

use super::check::{decide, Counters, Step};

/// Where the local transaction reports its outcome to the blocked listener call.
pub(crate) type Reply = SyncSender<LocalTransactionState>;

/// The argument of one `send_message_in_transaction`: the go-ahead for its local
/// transaction, given once the half message is stored.
pub(crate) struct Handoff(Mutex<Option<oneshot::Sender<Reply>>>);

impl Handoff {
    /// A handoff and the receiver the local transaction waits on.
    pub(crate) fn new() -> (Self, oneshot::Receiver<Reply>) {
        let (tx, rx) = oneshot::channel();
        (Self(Mutex::new(Some(tx))), rx)
    }

    /// Starts the local transaction and waits up to `timeout` for its outcome. Anything but
    /// an outcome (the sender gave up, the wait ran out) is unknown: the broker checks back
    /// and the log answers.
    fn run(&self, timeout: Duration) -> LocalTransactionState {
        let start = self.0.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some(start) = start else {
            return LocalTransactionState::Unknown;
        };
        let (reply, outcome) = sync_channel(1);
        if start.send(reply).is_err() {
            return LocalTransactionState::Unknown;
        }
        outcome
            .recv_timeout(timeout)
            .unwrap_or(LocalTransactionState::Unknown)
    }
}

/// The transaction listener of a [`TxProducer`](super::TxProducer).
pub(crate) struct Bridge<L> {
    pub(crate) log: L,
    pub(crate) runtime: Handle,
    pub(crate) grace: Duration,
    pub(crate) check_timeout: Duration,
    pub(crate) local_timeout: Duration,
    pub(crate) counts: Arc<Counters>,
}

impl<L: TxLog> TransactionListener for Bridge<L> {
    fn execute_local_transaction(
        &self,
        _msg: &dyn MessageTrait,
        arg: Option<&(dyn Any + Send + Sync)>,
    ) -> LocalTransactionState {
        match arg.and_then(|a| a.downcast_ref::<Handoff>()) {
            Some(handoff) => handoff.run(self.local_timeout),
            None => {
                tracing::warn!(
                    "transactional send without a local transaction: left to the check-back"
                );
                LocalTransactionState::Unknown
            }
        }
    }

    fn check_local_transaction(&self, msg: &MessageExt) -> LocalTransactionState {
        let state = match entry_of(msg) {
            Some(entry) => self.check(entry, msg.born_timestamp()),
            None => {
                tracing::warn!(
                    msg_id = %msg.msg_id,
                    "check-back for a message without a unique id: unknown"
                );
                LocalTransactionState::Unknown
            }
        };
        self.counts.answered(state);
        state
    }
}

impl<L: TxLog> Bridge<L> {
    fn check(&self, entry: TxEntry, born_ms: i64) -> LocalTransactionState {
        let age = Duration::from_millis(now_ms().saturating_sub(born_ms).max(0) as u64);
        let (reply, answer) = sync_channel(1);
        let log = self.log.clone();
        let grace = self.grace;
        let counts = self.counts.clone();
        self.runtime.spawn(async move {
            let state = answer_from_log(&log, &entry, age, grace, &counts).await;
            let _ = reply.send(state);
        });
        answer
            .recv_timeout(self.check_timeout)
            .unwrap_or(LocalTransactionState::Unknown)
    }
}

async fn answer_from_log<L: TxLog>(
    log: &L,
    entry: &TxEntry,
    age: Duration,
    grace: Duration,
    counts: &Counters,
) -> LocalTransactionState {
    let found = match log.state(&entry.tx_id).await {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!(tx_id = %entry.tx_id, error = %e, "check-back could not read the log");
            return LocalTransactionState::Unknown;
        }
    };
    match decide(found, age, grace) {
        Step::Answer(state) => state,
        Step::Resolve => match log.resolve(entry).await {
            Ok(TxState::Committed) => LocalTransactionState::CommitMessage,
            Ok(TxState::RolledBack) => {
                counts.settled();
                tracing::info!(tx_id = %entry.tx_id, "no local transaction past the grace period: rolled back");
                LocalTransactionState::RollbackMessage
            }
            Err(e) => {
                tracing::warn!(tx_id = %entry.tx_id, error = %e, "check-back could not settle the log");
                LocalTransactionState::Unknown
            }
        },
    }
}

/// The log entry a checked message stands for: its unique id, first key and real topic
/// (the broker keeps half messages on a topic of its own).
fn entry_of(msg: &MessageExt) -> Option<TxEntry> {
    let prop = |name: &'static str| {
        msg.property(&CheetahString::from_static_str(name))
            .filter(|v| !v.trim().is_empty())
    };
    let tx_id = prop(MessageConst::PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX)
        .or_else(|| msg.transaction_id().cloned())?;
    let topic = prop(MessageConst::PROPERTY_REAL_TOPIC).unwrap_or_else(|| msg.topic().clone());
    let key = prop(MessageConst::PROPERTY_KEYS)
        .and_then(|k| {
            k.as_str()
                .split(MessageConst::KEY_SEPARATOR)
                .next()
                .map(str::to_owned)
        })
        .filter(|k| !k.is_empty());
    TxEntry::new(tx_id.to_string(), key, topic.to_string()).ok()
}
