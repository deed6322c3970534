//! `demo run`: the whole story in one process on the embedded defaults — produce into the
//! in-memory broker, consume with several tasks, then check.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::broker::memory::{MemoryBroker, MemoryFaults};
use super::broker::Broker as _;
use super::check::check;
use super::consume;
use super::dedup::Dedup;
use super::produce::produce;
use super::report::{progress, RunReport};
use super::story::BusinessDb;
use super::{DemoConfig, DemoError};
use crate::url::BrokerUrl;

/// Runs the story and checks it. Violations are in the report, not an error: an error means
/// the run could not happen.
pub async fn run(cfg: &DemoConfig) -> Result<RunReport, DemoError> {
    cfg.validate()?;
    if cfg.broker != BrokerUrl::Memory {
        return Err(DemoError::Usage(format!(
            "`demo run` uses the in-memory broker (memory://), not {}: \
             use `demo produce` and `demo consume` with a real broker",
            cfg.broker
        )));
    }
    let db = BusinessDb::open(&cfg.db, cfg.consumers as u32 + 1).await?;
    let dedup = Dedup::open(&cfg.store, &db).await?;
    let broker = Arc::new(MemoryBroker::new(MemoryFaults {
        lost_acks: cfg.lost_acks,
        visibility: cfg.timing.visibility,
        seed: cfg.seed,
        prefetch: cfg.consumers * 2,
    }));
    let started = Instant::now();
    let plan = produce(&*broker, &db, cfg).await?;
    broker.close();

    let bar = progress(plan.messages.len() as u64, cfg.progress);
    let ticker = {
        let (bar, broker) = (bar.clone(), broker.clone());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(100));
            loop {
                every.tick().await;
                bar.set_position(broker.stats().settled());
            }
        })
    };
    let running = consume::spawn(broker.source(), dedup, db.clone(), cfg, None)?;
    let tally = running.finish().await;
    ticker.abort();
    bar.finish_and_clear();
    let elapsed = started.elapsed();

    Ok(RunReport {
        orders: plan.orders,
        copies: plan.copies,
        broker: broker.stats(),
        tally,
        check: check(&db, &cfg.topic).await?,
        elapsed,
    })
}
