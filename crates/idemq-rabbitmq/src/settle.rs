//! Settling a delivery from an outcome computed outside `Engine::run`.

use std::fmt;

use idemq_core::adapter::{dispose, Delivery, Disposition, RetryPolicy};
use idemq_core::{EngineError, Outcome};

/// Carries out what [`dispose`] decides, the same way [`idemq_core::adapter::process`] does.
pub(crate) async fn settle<D: Delivery, E: fmt::Display>(
    delivery: D,
    result: Result<Outcome<E>, EngineError>,
    attempt: u32,
    policy: &RetryPolicy,
) -> Result<Disposition, D::Error> {
    let disposition = dispose(&result, attempt, policy);
    drop(result);
    match &disposition {
        Disposition::Ack => delivery.ack().await?,
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
