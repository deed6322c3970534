//! The engine opens one `tracing` span per message, with its scope, key and outcome.
//!
//! Alone in its test binary: tracing caches each callsite's interest process-wide, and a
//! test running beside it without a subscriber could have the span disabled for this one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use idemq_core::store::MemoryStore;
use idemq_core::{Engine, EngineConfig, Envelope, KeyStrategy, Scope};
use tracing::span;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

type Never = std::convert::Infallible;

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
