use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::engine::{Engine, HandlerOutput, Outcome};
use crate::error::EngineError;
use crate::message::Message;

use super::{dispose, DeadLetterReason, Disposition, RetryPolicy};

/// A message as a broker adapter received it, with the ways to settle it.
///
/// The adapter carries out each [`Disposition`] with the broker's own means (ack, a delay
/// queue, a dead-letter queue) and tracks the attempt number (a header, a delivery count).
pub trait Delivery: Message + Send + Sync {
    /// The broker's error.
    type Error: std::error::Error + Send + Sync + 'static;

    /// This delivery's attempt number, from 1.
    fn attempt(&self) -> u32;

    /// Acknowledges the message.
    fn ack(self) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Delivers the message again after `delay`, as attempt `attempt`, noting `error`
    /// (`None` for a redelivery that does not count as an attempt).
    fn redeliver(
        self,
        delay: Duration,
        attempt: u32,
        error: Option<&str>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Parks the message on the dead-letter path with its reason.
    fn dead_letter(
        self,
        reason: &DeadLetterReason,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// A handler future borrowing the delivery it handles.
pub type HandlerFuture<'a, T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'a>>;

/// Runs one delivery through the engine and settles it as the contract says; returns what
/// was done with it.
pub async fn process<D, F, T, E>(
    engine: &Engine<D>,
    delivery: D,
    policy: &RetryPolicy,
    handler: F,
) -> Result<Disposition, D::Error>
where
    D: Delivery,
    F: for<'a> FnOnce(&'a D) -> HandlerFuture<'a, T, E>,
    T: HandlerOutput,
    E: fmt::Display,
{
    let result = engine.run(&delivery, || handler(&delivery)).await;
    settle(delivery, &result, policy).await
}

/// Settles a delivery as the contract says, from an engine answer computed elsewhere (a
/// transactional store's `run_in_tx`, say); returns what was done with it.
pub async fn settle<D, E>(
    delivery: D,
    result: &Result<Outcome<E>, EngineError>,
    policy: &RetryPolicy,
) -> Result<Disposition, D::Error>
where
    D: Delivery,
    E: fmt::Display,
{
    let attempt = delivery.attempt();
    let disposition = dispose(result, attempt, policy);
    match &disposition {
        Disposition::Ack { .. } => delivery.ack().await?,
        Disposition::Redeliver { delay } => delivery.redeliver(*delay, attempt, None).await?,
        Disposition::Retry {
            delay,
            next_attempt,
            error,
        } => {
            delivery
                .redeliver(*delay, *next_attempt, Some(error))
                .await?
        }
        Disposition::DeadLetter(reason) => {
            tracing::warn!(reason = %reason, "message dead-lettered");
            delivery.dead_letter(reason).await?
        }
    }
    Ok(disposition)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::key::{KeyStrategy, Scope};
    use crate::store::MemoryStore;
    use crate::EngineConfig;

    /// Records how it was settled.
    struct Fake {
        id: Option<String>,
        attempt: u32,
        settled: Arc<Mutex<Vec<String>>>,
    }

    impl Message for Fake {
        fn payload(&self) -> &[u8] {
            b"p"
        }
        fn message_id(&self) -> Option<&str> {
            self.id.as_deref()
        }
    }

    impl Delivery for Fake {
        type Error = std::io::Error;
        fn attempt(&self) -> u32 {
            self.attempt
        }
        async fn ack(self) -> Result<(), Self::Error> {
            self.settled.lock().unwrap().push("ack".into());
            Ok(())
        }
        async fn redeliver(
            self,
            delay: Duration,
            attempt: u32,
            _error: Option<&str>,
        ) -> Result<(), Self::Error> {
            let line = format!("redeliver {}s #{attempt}", delay.as_secs());
            self.settled.lock().unwrap().push(line);
            Ok(())
        }
        async fn dead_letter(self, reason: &DeadLetterReason) -> Result<(), Self::Error> {
            let line = format!("dead-letter {}", reason.kind());
            self.settled.lock().unwrap().push(line);
            Ok(())
        }
    }

    fn fail(_: &Fake) -> HandlerFuture<'_, (), String> {
        Box::pin(async { Err("no".into()) })
    }

    fn ok(d: &Fake) -> HandlerFuture<'_, String, String> {
        Box::pin(async move { Ok(d.id.clone().unwrap_or_default()) })
    }

    #[tokio::test]
    async fn process_settles_each_outcome_as_the_contract_says() {
        let engine = Engine::new(
            MemoryStore::new(),
            EngineConfig::new(Scope::new("contract").unwrap()),
            KeyStrategy::MessageId,
        );
        let settled = Arc::new(Mutex::new(Vec::new()));
        let fake = |id: Option<&str>, attempt| Fake {
            id: id.map(str::to_owned),
            attempt,
            settled: settled.clone(),
        };
        let policy = RetryPolicy::default();
        process(&engine, fake(Some("a"), 1), &policy, fail)
            .await
            .unwrap();
        process(&engine, fake(Some("a"), 2), &policy, ok)
            .await
            .unwrap();
        process(&engine, fake(Some("a"), 1), &policy, ok)
            .await
            .unwrap();
        process(&engine, fake(Some("b"), 5), &policy, fail)
            .await
            .unwrap();
        process(&engine, fake(None, 1), &policy, ok).await.unwrap();
        assert_eq!(
            *settled.lock().unwrap(),
            [
                "redeliver 3s #2",
                "ack",
                "ack",
                "dead-letter retries-exhausted",
                "dead-letter unkeyable"
            ]
        );
    }
}
