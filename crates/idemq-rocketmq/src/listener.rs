//! The bridge from the client's synchronous listener calls to the async runtime.

use std::sync::Arc;

use rocketmq_client_rust::{
    ClientResult, ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus, ConsumeOrderlyContext,
    ConsumeOrderlyStatus, MessageListenerConcurrently, MessageListenerOrderly,
};
use rocketmq_model::common::message::message_ext::MessageExt;
use tokio::sync::mpsc;

use crate::delivery::{RmqDelivery, Settler};
use crate::latch::{Calls, Verdict};

/// Hands a call's messages to the session and blocks until they are settled. The client
/// runs listeners on its blocking lane, so blocking here holds no Tokio worker.
pub(crate) struct Forward {
    pub(crate) tx: mpsc::Sender<Vec<RmqDelivery>>,
    pub(crate) calls: Arc<Calls>,
    pub(crate) settler: Arc<Settler>,
}

impl Forward {
    fn call(&self, msgs: &[&MessageExt]) -> Verdict {
        let Some(latch) = self.calls.begin(msgs.len()) else {
            return Verdict::Redeliver;
        };
        let batch = msgs
            .iter()
            .map(|m| RmqDelivery::new((*m).clone(), latch.clone(), self.settler.clone()))
            .collect();
        if self.tx.blocking_send(batch).is_err() {
            // The session is gone; the deliveries were dropped with the send and have
            // settled the latch as lost.
            return Verdict::Redeliver;
        }
        latch.wait()
    }
}

/// The concurrent listener.
pub(crate) struct Concurrently(pub(crate) Forward);

impl MessageListenerConcurrently for Concurrently {
    fn consume_message(
        &self,
        msgs: &[&MessageExt],
        _context: &ConsumeConcurrentlyContext,
    ) -> ClientResult<ConsumeConcurrentlyStatus> {
        Ok(match self.0.call(msgs) {
            Verdict::Commit => ConsumeConcurrentlyStatus::ConsumeSuccess,
            // A concurrent retry is a copy already stored, so `Again` does not occur here.
            Verdict::Again(_) | Verdict::Redeliver => ConsumeConcurrentlyStatus::ReconsumeLater,
        })
    }
}

/// The orderly listener.
pub(crate) struct Orderly(pub(crate) Forward);

impl MessageListenerOrderly for Orderly {
    fn consume_message(
        &self,
        msgs: &[&MessageExt],
        context: &mut ConsumeOrderlyContext,
    ) -> ClientResult<ConsumeOrderlyStatus> {
        Ok(match self.0.call(msgs) {
            Verdict::Commit => ConsumeOrderlyStatus::Success,
            Verdict::Again(delay) => {
                let ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX).max(10);
                context.set_suspend_current_queue_time_millis(ms);
                ConsumeOrderlyStatus::SuspendCurrentQueueAMoment
            }
            Verdict::Redeliver => {
                context.set_suspend_current_queue_time_millis(1_000);
                ConsumeOrderlyStatus::SuspendCurrentQueueAMoment
            }
        })
    }
}
