//! The engine reports what it decides through the `metrics` facade and `tracing` spans.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use idemq_core::store::MemoryStore;
use idemq_core::{Engine, EngineConfig, Envelope, KeyStrategy, Scope};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::MetricKind;
use tracing::span;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

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

/// Collects the fields recorded on `idemq.message` spans.
#[derive(Clone, Default)]
struct Spans(Arc<Mutex<Vec<HashMap<String, String>>>>);

struct Fields<'a>(&'a mut HashMap<String, String>);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().into(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
}

impl<S> Layer<S> for Spans
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        let mut fields = HashMap::new();
        attrs.record(&mut Fields(&mut fields));
        ctx.span(id).unwrap().extensions_mut().insert(fields);
    }
    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, ctx: Context<'_, S>) {
        let span = ctx.span(id).unwrap();
        let mut ext = span.extensions_mut();
        values.record(&mut Fields(
            ext.get_mut::<HashMap<String, String>>().unwrap(),
        ));
    }
    fn on_close(&self, id: span::Id, ctx: Context<'_, S>) {
        let span = ctx.span(&id).unwrap();
        if span.name() == "idemq.message" {
            let fields = span
                .extensions()
                .get::<HashMap<String, String>>()
                .unwrap()
                .clone();
            self.0.lock().unwrap().push(fields);
        }
    }
}

#[test]
fn each_message_gets_a_span_with_scope_key_and_outcome() {
    let spans = Spans::default();
    let subscriber = tracing_subscriber::registry().with(spans.clone());
    tracing::subscriber::with_default(subscriber, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let e = Engine::new(
                MemoryStore::new(),
                EngineConfig::new(Scope::new("obs/spans").unwrap()),
                KeyStrategy::MessageId,
            );
            let m = Envelope::new("p").with_message_id("order-1");
            e.run(&m, || async { Ok::<_, Never>(()) }).await.unwrap();
            e.run(&m, || async { Ok::<_, Never>(()) }).await.unwrap();
        });
    });
    let seen = spans.0.lock().unwrap().clone();
    let outcomes: Vec<(&str, &str, &str)> = seen
        .iter()
        .map(|f| {
            (
                f["scope"].as_str(),
                f["key"].as_str(),
                f["outcome"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            ("obs/spans", "order-1", "processed"),
            ("obs/spans", "order-1", "duplicate")
        ]
    );
}
