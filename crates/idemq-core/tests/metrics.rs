//! The engine reports what it decides through the `metrics` facade.

use std::collections::HashMap;
use std::time::Duration;

use idemq_core::store::MemoryStore;
use idemq_core::{Engine, EngineConfig, Envelope, KeyStrategy, Scope};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::MetricKind;

type Never = std::convert::Infallible;

#[test]
fn claims_handler_runs_and_fencing_refusals_are_counted() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let scope = Scope::new("obs/metrics").unwrap();
            let e = Engine::new(
                MemoryStore::new(),
                EngineConfig::new(scope)
                    .lease(Duration::from_millis(50))
                    .heartbeat(None),
                KeyStrategy::MessageId,
            );
            let m = Envelope::new("p").with_message_id("a");
            e.run(&m, || async { Ok::<_, Never>(()) }).await.unwrap();
            e.run(&m, || async { Ok::<_, Never>(()) }).await.unwrap();
            let b = Envelope::new("p").with_message_id("b");
            e.run(&b, || async { Err::<(), _>("no") }).await.unwrap();
        });
    });
    let mut counters: HashMap<String, u64> = HashMap::new();
    let mut histograms = 0;
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let labels: Vec<String> = key
            .key()
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        let name = format!("{}{{{}}}", key.key().name(), labels.join(","));
        match (key.kind(), value) {
            (MetricKind::Counter, DebugValue::Counter(n)) => {
                counters.insert(name, n);
            }
            (MetricKind::Histogram, DebugValue::Histogram(v)) => histograms += v.len(),
            _ => {}
        }
    }
    let get = |n: &str| counters.get(n).copied().unwrap_or(0);
    assert_eq!(
        get("idemq_claims_total{scope=obs/metrics,outcome=acquired}"),
        2,
        "{counters:?}"
    );
    assert_eq!(
        get("idemq_claims_total{scope=obs/metrics,outcome=duplicate}"),
        1
    );
    assert_eq!(get("idemq_handled_total{scope=obs/metrics,result=ok}"), 1);
    assert_eq!(
        get("idemq_handled_total{scope=obs/metrics,result=error}"),
        1
    );
    assert_eq!(histograms, 2, "one handler time per run");
}
