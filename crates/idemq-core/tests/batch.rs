//! `Engine::run_batch` answers each message as `Engine::run` would alone.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use idemq_core::store::MemoryStore;
use idemq_core::{
    Engine, EngineConfig, EngineError, Envelope, KeyStrategy, Outcome, Scope, State, Store,
};

fn engine(store: Arc<MemoryStore>, lease: Duration) -> Engine<Envelope> {
    let config = EngineConfig::new(Scope::new("batch/test").unwrap())
        .lease(lease)
        .heartbeat(None);
    Engine::with_shared_store(store, config, KeyStrategy::MessageId)
}

fn msg(id: &str, payload: &'static str) -> Envelope {
    Envelope::new(payload).with_message_id(id)
}

#[tokio::test]
async fn copies_in_one_batch_run_once_and_the_copy_gets_the_stored_result() {
    let store = Arc::new(MemoryStore::new());
    let e = engine(store, Duration::from_secs(60));
    let runs = AtomicU32::new(0);
    let msgs = [msg("a", "p"), msg("b", "q"), msg("a", "p")];
    let out = e
        .run_batch(&msgs, |i| {
            runs.fetch_add(1, Ordering::SeqCst);
            let id = msgs[i].message_id.clone().unwrap();
            async move { Ok::<_, String>(format!("done {id}")) }
        })
        .await;
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert!(matches!(&out[0], Ok(Outcome::Processed { result: Some(r), .. }) if r == "done a"));
    assert!(matches!(&out[1], Ok(Outcome::Processed { .. })));
    assert!(
        matches!(&out[2], Ok(Outcome::Duplicate { result: Some(r) }) if r == "done a"),
        "{:?}",
        out[2]
    );
    // A later batch sees both as duplicates and runs nothing.
    let again = e
        .run_batch(&msgs[..2], |_| async { Ok::<_, String>(String::new()) })
        .await;
    assert!(again
        .iter()
        .all(|o| matches!(o, Ok(Outcome::Duplicate { .. }))));
}

#[tokio::test]
async fn a_failed_copy_leaves_its_twin_in_progress_and_the_key_free_for_a_retry() {
    let store = Arc::new(MemoryStore::new());
    let e = engine(store.clone(), Duration::from_secs(60));
    let msgs = [
        msg("f", "p"),
        msg("f", "p"),
        msg("ok", "p"),
        Envelope::new("no id"),
    ];
    let out = e
        .run_batch(&msgs, |i| async move {
            if i == 0 {
                Err("boom".to_owned())
            } else {
                Ok(())
            }
        })
        .await;
    assert!(matches!(&out[0], Ok(Outcome::Failed { error, attempt: 1 }) if error == "boom"));
    assert!(
        matches!(&out[1], Ok(Outcome::InProgress { .. })),
        "{:?}",
        out[1]
    );
    assert!(matches!(&out[2], Ok(Outcome::Processed { .. })));
    assert!(matches!(&out[3], Err(EngineError::Key(_))));
    // Released: the retry runs as attempt 2.
    let retry = e
        .run(&msgs[0], || async { Ok::<_, String>(()) })
        .await
        .unwrap();
    assert!(
        matches!(retry, Outcome::Processed { attempt: 2, .. }),
        "{retry:?}"
    );
}

#[tokio::test]
async fn another_payload_under_a_key_in_the_same_batch_conflicts() {
    let store = Arc::new(MemoryStore::new());
    let e = engine(store, Duration::from_secs(60));
    let msgs = [msg("k", "one"), msg("k", "two")];
    let out = e.run_batch(&msgs, |_| async { Ok::<_, String>(()) }).await;
    assert!(matches!(&out[0], Ok(Outcome::Processed { .. })));
    assert!(
        matches!(&out[1], Ok(Outcome::Conflict { existing, incoming: Some(incoming) })
            if *existing == idemq_core::Fingerprint::of(b"one")
                && *incoming == idemq_core::Fingerprint::of(b"two")),
        "{:?}",
        out[1]
    );
}

#[tokio::test]
async fn a_stale_owner_in_a_batch_is_fenced() {
    let store = Arc::new(MemoryStore::new());
    let e = engine(store.clone(), Duration::from_millis(50));
    let msgs = [msg("slow", "p"), msg("quick", "p")];
    let thief = engine(store.clone(), Duration::from_secs(60));
    let out = e
        .run_batch(&msgs, |i| {
            let thief = thief.clone();
            let m = msgs[i].clone();
            async move {
                if i == 0 {
                    // The lease runs out and another consumer takes the key over.
                    tokio::time::sleep(Duration::from_millis(120)).await;
                    let taken = thief.run(&m, || async { Ok::<_, String>(()) }).await;
                    assert!(matches!(taken, Ok(Outcome::Processed { attempt: 2, .. })));
                }
                Ok::<_, String>(())
            }
        })
        .await;
    assert!(
        matches!(&out[0], Err(EngineError::LeaseLost { .. })),
        "{:?}",
        out[0]
    );
    assert!(matches!(&out[1], Ok(Outcome::Processed { .. })));
}

#[tokio::test]
async fn a_panicking_handler_lets_its_batch_mates_complete_first() {
    let store = Arc::new(MemoryStore::new());
    let e = engine(store.clone(), Duration::from_secs(60));
    let msgs = [msg("mate", "p"), msg("crash", "p")];
    let crashed = tokio::spawn(run_owned(e.clone(), msgs.to_vec()));
    assert!(crashed.await.unwrap_err().is_panic());
    let key = |id: &str| e.record_key(idemq_core::IdempotencyKey::new(id).unwrap());
    let mate = store.get(&key("mate")).await.unwrap().unwrap();
    assert_eq!(
        mate.state,
        State::Consumed,
        "completed before the panic went on"
    );
    let crash = store.get(&key("crash")).await.unwrap().unwrap();
    assert_eq!(
        crash.state,
        State::Consuming,
        "left to its lease, as a crash would"
    );
}

async fn run_owned(e: Engine<Envelope>, msgs: Vec<Envelope>) {
    e.run_batch(&msgs, |i| async move {
        if i == 1 {
            panic!("injected");
        }
        Ok::<_, String>(())
    })
    .await;
}
