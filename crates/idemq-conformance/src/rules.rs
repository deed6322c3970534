//! One function per rule of the record; [`store_conformance!`](crate::store_conformance)
//! turns each into a test.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use idemq_core::time::now_ms;
use idemq_core::{
    Claim, ClaimRequest, Completion, Engine, EngineConfig, EngineError, Envelope, FailMode,
    FencingToken, Fingerprint, IdempotencyKey, KeyStrategy, Outcome, Record, RecordKey, Scope,
    State, Store, StoreError,
};
use tokio::sync::oneshot;

type Shared = Arc<dyn Store>;

/// A scope no other test uses.
pub fn fresh_scope() -> Scope {
    Scope::new(format!("conformance/{}", uuid::Uuid::new_v4().simple())).unwrap()
}

fn engine(store: Shared, config: EngineConfig) -> Engine<Envelope> {
    Engine::with_shared_store(store, config, KeyStrategy::MessageId)
}

fn msg(id: &str, payload: &'static str) -> Envelope {
    Envelope::new(payload).with_message_id(id)
}

fn key(scope: &Scope, k: &str) -> RecordKey {
    RecordKey::new(scope.clone(), IdempotencyKey::new(k).unwrap())
}

fn request(key: RecordKey, payload: &[u8], lease: Duration) -> ClaimRequest {
    ClaimRequest {
        key,
        fingerprint: Some(Fingerprint::of(payload)),
        lease,
        retention: Duration::from_secs(3600),
    }
}

fn token_of(claim: &Claim) -> FencingToken {
    match claim {
        Claim::Acquired { token, .. } => *token,
        other => panic!("expected Acquired, got {other:?}"),
    }
}

type Never = std::convert::Infallible;

/// Rule 1: the first delivery runs the handler; the record becomes `CONSUMED` with the
/// result, kept for the configured retention.
pub async fn first_delivery_runs_and_records_the_result<S: Store>(store: Arc<S>) {
    let scope = fresh_scope();
    let retention = Duration::from_secs(7200);
    let e = engine(
        store.clone(),
        EngineConfig::new(scope.clone()).retention(retention),
    );
    let before = now_ms();
    let out = e
        .run(&msg("order-1", "reduce 1"), || async {
            Ok::<_, Never>("stock=99")
        })
        .await
        .unwrap();
    match out {
        Outcome::Processed {
            result,
            attempt,
            protected,
        } => {
            assert_eq!(result.as_deref(), Some(&b"stock=99"[..]));
            assert_eq!(attempt, 1);
            assert!(protected);
        }
        other => panic!("expected Processed, got {other:?}"),
    }
    let rec = store.get(&key(&scope, "order-1")).await.unwrap().unwrap();
    assert_eq!(rec.state, State::Consumed);
    assert_eq!(rec.result.as_deref(), Some(&b"stock=99"[..]));
    assert_eq!(rec.attempts, 1);
    assert_eq!(rec.fingerprint, Some(Fingerprint::of(b"reduce 1")));
    let kept = rec.expires_at - before;
    assert!(
        (7_199_000..=7_210_000).contains(&kept),
        "kept for {kept} ms, expected about 7200 s"
    );
}

/// Rule 2: a duplicate after completion does not run the handler and gets the stored result.
pub async fn duplicate_after_completion_skips_the_handler<S: Store>(store: Arc<S>) {
    let e = engine(store, EngineConfig::new(fresh_scope()));
    let m = msg("order-2", "reduce 2");
    e.run(&m, || async { Ok::<_, Never>("first") })
        .await
        .unwrap();
    let runs = AtomicUsize::new(0);
    for _ in 0..3 {
        let out = e
            .run(&m, || async {
                runs.fetch_add(1, Ordering::SeqCst);
                Ok::<_, Never>("second")
            })
            .await
            .unwrap();
        match out {
            Outcome::Duplicate { result } => assert_eq!(result.as_deref(), Some(&b"first"[..])),
            other => panic!("expected Duplicate, got {other:?}"),
        }
    }
    assert_eq!(
        runs.load(Ordering::SeqCst),
        0,
        "the handler ran for a duplicate"
    );
}

/// Rule 3: a duplicate arriving while the first is in flight is reported in progress and
/// does not run the handler concurrently.
pub async fn duplicate_in_flight_is_deferred_not_run<S: Store>(store: Arc<S>) {
    let e = engine(store, EngineConfig::new(fresh_scope()));
    let m = msg("order-3", "reduce 3");
    let (started_tx, started_rx) = oneshot::channel();
    let (finish_tx, finish_rx) = oneshot::channel::<()>();
    let first = {
        let (e, m) = (e.clone(), m.clone());
        tokio::spawn(async move {
            e.run(&m, || async move {
                started_tx.send(()).unwrap();
                finish_rx.await.unwrap();
                Ok::<_, Never>(())
            })
            .await
        })
    };
    started_rx.await.unwrap();
    let runs = AtomicUsize::new(0);
    let out = e
        .run(&m, || async {
            runs.fetch_add(1, Ordering::SeqCst);
            Ok::<_, Never>(())
        })
        .await
        .unwrap();
    let Outcome::InProgress { until } = out else {
        panic!("expected InProgress, got {out:?}");
    };
    assert!(until > now_ms(), "the in-flight lease should still be live");
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    finish_tx.send(()).unwrap();
    assert!(matches!(
        first.await.unwrap().unwrap(),
        Outcome::Processed { .. }
    ));
}

/// Rule 4: a handler error releases the claim (only with the owner's token), so the retry
/// runs the handler again.
pub async fn handler_error_releases_the_claim_for_a_retry<S: Store>(store: Arc<S>) {
    let scope = fresh_scope();
    let e = engine(store.clone(), EngineConfig::new(scope.clone()));
    let m = msg("order-4", "reduce 4");
    let out = e
        .run(&m, || async { Err::<(), _>("db timeout") })
        .await
        .unwrap();
    assert!(
        matches!(
            out,
            Outcome::Failed {
                error: "db timeout",
                attempt: 1
            }
        ),
        "{out:?}"
    );
    let out = e.run(&m, || async { Ok::<_, Never>("ok") }).await.unwrap();
    assert!(
        matches!(out, Outcome::Processed { attempt: 2, .. }),
        "{out:?}"
    );

    // A release must present the owner's token.
    let k = key(&scope, "order-4b");
    let t = token_of(
        &store
            .claim(&request(k.clone(), b"x", Duration::from_secs(60)))
            .await
            .unwrap(),
    );
    let wrong = idemq_core::FencingToken(t.0 + 7);
    assert!(matches!(
        store.release(&k, wrong).await,
        Err(StoreError::LeaseLost { .. })
    ));
    let again = store
        .claim(&request(k.clone(), b"x", Duration::from_secs(60)))
        .await
        .unwrap();
    assert!(matches!(again, Claim::InProgress { .. }), "{again:?}");
    store.release(&k, t).await.unwrap();
    let retaken = store
        .claim(&request(k, b"x", Duration::from_secs(60)))
        .await
        .unwrap();
    assert!(
        matches!(
            retaken,
            Claim::Acquired {
                attempt: 2,
                takeover: false,
                ..
            }
        ),
        "{retaken:?}"
    );
}

/// Rule 5: an expired lease is taken over; the stale owner's complete, release and extend
/// are refused by the fencing token.
pub async fn expired_lease_is_taken_over_and_the_stale_owner_fenced<S: Store>(store: Arc<S>) {
    let k = key(&fresh_scope(), "order-5");
    let lease = Duration::from_millis(100);
    let stale = token_of(&store.claim(&request(k.clone(), b"p", lease)).await.unwrap());
    wait_until_past(now_ms() + 150).await;
    let taken = store
        .claim(&request(k.clone(), b"p", lease * 50))
        .await
        .unwrap();
    let Claim::Acquired {
        token: fresh,
        attempt: 2,
        takeover: true,
    } = taken
    else {
        panic!("expected a takeover, got {taken:?}");
    };
    assert!(fresh > stale, "fencing tokens must grow");
    for refused in [
        store
            .complete(&k, stale, Some(b"stale"), Duration::from_secs(60))
            .await,
        store.release(&k, stale).await,
        store.extend(&k, stale, lease).await.map(drop),
    ] {
        assert!(
            matches!(refused, Err(StoreError::LeaseLost { .. })),
            "{refused:?}"
        );
    }
    let deadline = store
        .extend(&k, fresh, Duration::from_secs(30))
        .await
        .unwrap();
    assert!(deadline >= now_ms() + 29_000);
    store
        .complete(&k, fresh, Some(b"fresh"), Duration::from_secs(60))
        .await
        .unwrap();
    // A retried completion by the owner is harmless; the stale one is still refused.
    store
        .complete(&k, fresh, Some(b"fresh"), Duration::from_secs(60))
        .await
        .unwrap();
    assert!(store
        .complete(&k, stale, None, Duration::from_secs(60))
        .await
        .is_err());
    let rec = store.get(&k).await.unwrap().unwrap();
    assert_eq!(
        (rec.state, rec.result.as_deref()),
        (State::Consumed, Some(&b"fresh"[..]))
    );
}

/// Rule 5, heartbeat: a handler that runs past its lease keeps it by extending it.
pub async fn heartbeat_keeps_a_long_handler_lease<S: Store>(store: Arc<S>) {
    let scope = fresh_scope();
    let lease = Duration::from_millis(300);
    let e = engine(store.clone(), EngineConfig::new(scope.clone()).lease(lease));
    let (started_tx, started_rx) = oneshot::channel();
    let (finish_tx, finish_rx) = oneshot::channel::<()>();
    let m = msg("order-5h", "long");
    let long = {
        let (e, m) = (e.clone(), m.clone());
        tokio::spawn(async move {
            e.run(&m, || async move {
                started_tx.send(()).unwrap();
                finish_rx.await.unwrap();
                Ok::<_, Never>(())
            })
            .await
        })
    };
    started_rx.await.unwrap();
    // Three lease lengths later the first owner still holds the key.
    wait_until_past(now_ms() + 900).await;
    let claim = store
        .claim(&e.claim_request(key(&scope, "order-5h"), Some(Fingerprint::of(b"long"))))
        .await
        .unwrap();
    assert!(matches!(claim, Claim::InProgress { .. }), "{claim:?}");
    finish_tx.send(()).unwrap();
    assert!(matches!(
        long.await.unwrap().unwrap(),
        Outcome::Processed { .. }
    ));
}

/// Rule 5, engine side: a handler whose lease was taken over gets a typed `LeaseLost`.
pub async fn engine_reports_lease_lost_to_a_stale_owner<S: Store>(store: Arc<S>) {
    let scope = fresh_scope();
    let cfg = EngineConfig::new(scope.clone())
        .lease(Duration::from_millis(100))
        .heartbeat(None);
    let e = engine(store.clone(), cfg);
    let k = key(&scope, "order-5l");
    let thief = store.clone();
    let out = e
        .run(&msg("order-5l", "p"), || async move {
            wait_until_past(now_ms() + 150).await;
            let taken = thief
                .claim(&request(k, b"p", Duration::from_secs(60)))
                .await
                .unwrap();
            assert!(matches!(taken, Claim::Acquired { takeover: true, .. }));
            Ok::<_, Never>(())
        })
        .await;
    assert!(matches!(out, Err(EngineError::LeaseLost { .. })), "{out:?}");
}

/// Rule 6: the same key with another payload is a conflict; an identical replay is not.
pub async fn other_payload_under_a_used_key_conflicts<S: Store>(store: Arc<S>) {
    let scope = fresh_scope();
    let e = engine(store.clone(), EngineConfig::new(scope.clone()));
    let k = key(&scope, "order-6");
    // In flight.
    let t = token_of(
        &store
            .claim(&request(k.clone(), b"A", Duration::from_secs(60)))
            .await
            .unwrap(),
    );
    let c = store
        .claim(&request(k.clone(), b"B", Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(
        c,
        Claim::Conflict {
            existing: Fingerprint::of(b"A")
        }
    );
    store
        .complete(&k, t, None, Duration::from_secs(60))
        .await
        .unwrap();
    // Consumed: the fingerprint is kept.
    let out = e
        .run(&msg("order-6", "B"), || async { Ok::<_, Never>(()) })
        .await
        .unwrap();
    assert!(
        matches!(out, Outcome::Conflict { existing, incoming: Some(incoming) }
            if existing == Fingerprint::of(b"A") && incoming == Fingerprint::of(b"B")),
        "{out:?}"
    );
    let out = e
        .run(&msg("order-6", "A"), || async { Ok::<_, Never>(()) })
        .await
        .unwrap();
    assert!(matches!(out, Outcome::Duplicate { .. }), "{out:?}");
}

/// Rule 7: 64 tasks claiming the same 1,000 keys get exactly one `Acquired` per key; half of
/// them claim in batches of 100, so batch claims are held to the same rule.
pub async fn concurrent_claims_acquire_each_key_once<S: Store>(store: Arc<S>) {
    let scope = fresh_scope();
    let keys: Arc<Vec<RecordKey>> =
        Arc::new((0..1000).map(|i| key(&scope, &format!("k{i}"))).collect());
    let tasks = (0..64).map(|t| {
        let (store, keys) = (store.clone(), keys.clone());
        tokio::spawn(async move {
            // Each task starts at another offset, so tasks race on different keys.
            let order: Vec<&RecordKey> =
                keys.iter().cycle().skip(t * 15).take(keys.len()).collect();
            let reqs: Vec<ClaimRequest> = order
                .iter()
                // A lease far longer than the test, so no claim expires and is taken over.
                .map(|k| request((*k).clone(), b"same", Duration::from_secs(3600)))
                .collect();
            let mut won = Vec::new();
            if t % 2 == 0 {
                for chunk in reqs.chunks(100) {
                    let claims = store.claim_batch(chunk).await.unwrap();
                    assert_eq!(claims.len(), chunk.len());
                    for (r, c) in chunk.iter().zip(claims) {
                        if matches!(c, Claim::Acquired { .. }) {
                            won.push(r.key.clone());
                        }
                    }
                }
            } else {
                for r in &reqs {
                    if matches!(store.claim(r).await.unwrap(), Claim::Acquired { .. }) {
                        won.push(r.key.clone());
                    }
                }
            }
            won
        })
    });
    let mut wins: HashMap<RecordKey, usize> = HashMap::new();
    for won in futures::future::join_all(tasks).await {
        for k in won.unwrap() {
            *wins.entry(k).or_default() += 1;
        }
    }
    assert_eq!(wins.len(), 1000, "some keys were never acquired");
    let doubled: Vec<_> = wins.iter().filter(|(_, n)| **n != 1).collect();
    assert!(
        doubled.is_empty(),
        "{} keys acquired more than once, e.g. {:?}",
        doubled.len(),
        &doubled[..doubled.len().min(3)]
    );
}

/// Two keys for the batch rules: `done` consumed with result `r` (payload `d`), and `busy`
/// still being consumed (payload `b`).
async fn done_and_busy<S: Store>(
    store: &S,
    scope: &Scope,
    lease: Duration,
) -> (RecordKey, RecordKey) {
    let (done, busy) = (key(scope, "done"), key(scope, "busy"));
    let t = token_of(
        &store
            .claim(&request(done.clone(), b"d", lease))
            .await
            .unwrap(),
    );
    store.complete(&done, t, Some(b"r"), lease).await.unwrap();
    store
        .claim(&request(busy.clone(), b"b", lease))
        .await
        .unwrap();
    (done, busy)
}

/// `claim_batch` answers each key as `claim` would, in order.
pub async fn batch_claim_answers_like_single_claims<S: Store>(store: Arc<S>) {
    let scope = fresh_scope();
    let lease = Duration::from_secs(60);
    let (done, busy) = done_and_busy(&*store, &scope, lease).await;
    let clash = key(&scope, "clash");
    store
        .claim(&request(clash.clone(), b"c", lease))
        .await
        .unwrap();
    let reqs = vec![
        request(key(&scope, "new"), b"n", lease),
        request(done, b"d", lease),
        request(busy, b"b", lease),
        request(clash, b"other", lease),
        request(key(&scope, "new2"), b"n", lease),
    ];
    let claims = store.claim_batch(&reqs).await.unwrap();
    assert!(
        matches!(claims[0], Claim::Acquired { attempt: 1, .. }),
        "{claims:?}"
    );
    assert_eq!(
        claims[1],
        Claim::Done {
            result: Some(Bytes::from_static(b"r"))
        }
    );
    assert!(matches!(claims[2], Claim::InProgress { .. }), "{claims:?}");
    assert_eq!(
        claims[3],
        Claim::Conflict {
            existing: Fingerprint::of(b"c")
        }
    );
    assert!(
        matches!(claims[4], Claim::Acquired { attempt: 1, .. }),
        "{claims:?}"
    );
    assert!(store.claim_batch(&[]).await.unwrap().is_empty());
}

/// `get_batch` answers each key as `get` would, in order, missing keys included.
pub async fn batch_get_answers_like_single_gets<S: Store>(store: Arc<S>) {
    let scope = fresh_scope();
    let (done, busy) = done_and_busy(&*store, &scope, Duration::from_secs(60)).await;
    let keys = vec![
        key(&scope, "missing"),
        done.clone(),
        busy.clone(),
        done.clone(),
    ];
    let got = store.get_batch(&keys).await.unwrap();
    assert_eq!(got.len(), keys.len());
    assert!(got[0].is_none(), "{got:?}");
    for (k, g) in keys.iter().zip(&got).skip(1) {
        assert_eq!(g, &store.get(k).await.unwrap(), "{k}");
    }
    let consumed = got[1].as_ref().unwrap();
    assert_eq!(consumed.state, State::Consumed);
    assert_eq!(consumed.result.as_deref(), Some(&b"r"[..]));
    assert_eq!(got[2].as_ref().unwrap().state, State::Consuming);
    assert!(store.get_batch(&[]).await.unwrap().is_empty());
}

/// `complete_batch` answers each completion as `complete` would, in order, and leaves the
/// records single completes in a row would: each owned claim is consumed with its own result
/// and retention, stale tokens (taken over, released) and unknown keys are refused, a result
/// too large is answered as `complete` answers it alone, a retried completion changes
/// nothing, and a key met twice sees its first completion.
pub async fn batch_complete_answers_like_single_completes<S: Store>(store: Arc<S>) {
    let scope = fresh_scope();
    let lease = Duration::from_secs(60);
    let mins = |n: u64| Duration::from_secs(60 * n);
    let claimed = |name: &str, lease: Duration| {
        let (store, k) = (store.clone(), key(&scope, name));
        async move {
            let claim = store.claim(&request(k.clone(), b"p", lease)).await.unwrap();
            (k, token_of(&claim))
        }
    };
    // Taken over: its first owner's lease runs out while the rest is set up.
    let (taken, stale) = claimed("taken", Duration::from_millis(100)).await;
    let lapsed = now_ms() + 150;
    let (a, ta) = claimed("a", lease).await;
    let (b, tb) = claimed("b", lease).await;
    let (twice, tw) = claimed("twice", lease).await;
    let (released, old) = claimed("released", lease).await;
    store.release(&released, old).await.unwrap();
    let (_, owner) = claimed("released", lease).await;
    let (big, tbig) = claimed("big", lease).await;
    let (twin, ttwin) = claimed("big-twin", lease).await;
    let (again, tg) = claimed("again", lease).await;
    store
        .complete(&again, tg, Some(b"first"), mins(10))
        .await
        .unwrap();
    let completed_before = store.get(&again).await.unwrap().unwrap();
    let never = key(&scope, "never");
    wait_until_past(lapsed).await;
    let (_, fresh) = claimed("taken", lease).await;

    // Over the 1 MiB the SQL and Redis stores accept by default; a store without a limit
    // takes it, alone and in a batch alike.
    let too_big = vec![7u8; 1024 * 1024 + 1];
    let alone = store.complete(&twin, ttwin, Some(&too_big), mins(60)).await;
    assert!(
        matches!(alone, Ok(()) | Err(StoreError::ResultTooLarge { .. })),
        "{alone:?}"
    );

    let c = |key, token, result, retention| Completion {
        key,
        token,
        result,
        retention,
    };
    // Mixed retentions, with `twice` completed again under the first one's: a store that
    // groups completions by retention must still complete `twice` with "one" first.
    let items = vec![
        c(&a, ta, Some(&b"ra"[..]), mins(60)),
        c(&twice, tw, Some(b"one"), mins(30)),
        c(&b, tb, None, mins(120)),
        c(&taken, stale, Some(b"stale"), mins(60)),
        c(&released, old, Some(b"old"), mins(60)),
        c(&big, tbig, Some(&too_big), mins(60)),
        c(&again, tg, Some(b"second"), mins(120)),
        c(&twice, tw, Some(b"two"), mins(60)),
        c(&released, owner, Some(b"new"), mins(90)),
        c(&never, FencingToken(1), None, mins(60)),
    ];
    let out = store.complete_batch(&items).await.unwrap();
    assert_eq!(out.len(), items.len(), "{out:?}");
    for i in [0, 1, 2, 6, 7, 8] {
        assert!(out[i].is_ok(), "completion {i}: {:?}", out[i]);
    }
    for i in [3, 4, 9] {
        assert!(
            matches!(&out[i], Err(StoreError::LeaseLost { key }) if key == items[i].key),
            "completion {i}: {:?}",
            out[i]
        );
    }
    match (&alone, &out[5]) {
        (Ok(()), Ok(())) => {}
        (
            Err(StoreError::ResultTooLarge { size, max }),
            Err(StoreError::ResultTooLarge {
                size: batch_size,
                max: batch_max,
            }),
        ) => assert_eq!((size, max), (batch_size, batch_max)),
        other => panic!("the oversized completion answered {other:?} (alone, batch)"),
    }

    let record = |k: &RecordKey| {
        let (store, k) = (store.clone(), k.clone());
        async move { store.get(&k).await.unwrap() }
    };
    let consumed = |k: &RecordKey, rec: Option<Record>, token, result: Option<&[u8]>, keep| {
        let rec = rec.unwrap_or_else(|| panic!("{k} was lost"));
        assert_eq!(
            (rec.state, rec.token, rec.result.as_deref()),
            (State::Consumed, token, result),
            "{k}"
        );
        let keep: Duration = keep;
        assert_eq!(
            rec.expires_at - rec.updated_at,
            keep.as_millis() as i64,
            "{k}: the retention of its completion"
        );
    };
    consumed(&a, record(&a).await, ta, Some(b"ra"), mins(60));
    consumed(&b, record(&b).await, tb, None, mins(120));
    consumed(&twice, record(&twice).await, tw, Some(b"one"), mins(30));
    consumed(
        &released,
        record(&released).await,
        owner,
        Some(b"new"),
        mins(90),
    );
    let rec = record(&taken).await.unwrap();
    assert_eq!((rec.state, rec.token), (State::Consuming, fresh));
    assert_eq!(record(&again).await, Some(completed_before));
    assert!(record(&never).await.is_none());
    match alone {
        Ok(()) => consumed(&big, record(&big).await, tbig, Some(&too_big), mins(60)),
        Err(_) => {
            let rec = record(&big).await.unwrap();
            assert_eq!((rec.state, rec.token), (State::Consuming, tbig));
        }
    }
    assert!(store.complete_batch(&[]).await.unwrap().is_empty());
}

/// Records are forgotten after their retention: the key is new again.
pub async fn records_expire_after_their_retention<S: Store>(store: Arc<S>) {
    let scope = fresh_scope();
    let k = key(&scope, "short-lived");
    let t = token_of(
        &store
            .claim(&request(k.clone(), b"p", Duration::from_millis(50)))
            .await
            .unwrap(),
    );
    store
        .complete(&k, t, None, Duration::from_millis(200))
        .await
        .unwrap();
    assert!(store.get(&k).await.unwrap().is_some());
    wait_until_past(now_ms() + 400).await;
    assert!(store.get(&k).await.unwrap().is_none());
    let again = store
        .claim(&request(k, b"other", Duration::from_secs(5)))
        .await
        .unwrap();
    assert!(
        matches!(again, Claim::Acquired { attempt: 1, .. }),
        "{again:?}"
    );
}

/// Keys with quotes, semicolons, braces, wildcards, non-ASCII text and digests are stored and
/// read back intact, each its own record.
pub async fn awkward_keys_round_trip<S: Store>(store: Arc<S>) {
    let scope = Scope::new(format!("odd.scope:{}/@x_-", uuid::Uuid::new_v4().simple())).unwrap();
    let long = "L".repeat(5000);
    let raws: Vec<&str> = vec![
        "it's",
        "a\"b",
        "x; DROP TABLE t; --",
        "{tag}",
        "*",
        "?",
        "[a-z]",
        "%_",
        "\\",
        "订单-7 🚀",
        "a b",
        "sha256:raw",
        &long,
        "a\0b",
        "tab\tkey",
    ];
    let lease = Duration::from_secs(60);
    for (i, raw) in raws.iter().enumerate() {
        let k = RecordKey::new(scope.clone(), IdempotencyKey::new(raw).unwrap());
        let t = token_of(
            &store
                .claim(&request(k.clone(), raw.as_bytes(), lease))
                .await
                .unwrap(),
        );
        let result = format!("result-{i}");
        store
            .complete(&k, t, Some(result.as_bytes()), lease)
            .await
            .unwrap();
        let rec = store
            .get(&k)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{raw:?} was lost"));
        assert_eq!(rec.result.as_deref(), Some(result.as_bytes()), "{raw:?}");
    }
    let stats = store.stats(&scope).await.unwrap();
    assert_eq!(stats.consumed, raws.len() as u64, "keys collided");
}

/// A result of the engine's default limit (64 KiB) of arbitrary bytes round-trips; a larger
/// one is refused with a typed error, and the message is not acknowledged.
pub async fn large_results_round_trip<S: Store>(store: Arc<S>) {
    let scope = fresh_scope();
    let e = engine(store.clone(), EngineConfig::new(scope.clone()));
    let big: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
    let expected = big.clone();
    e.run(&msg("big", "p"), || async { Ok::<_, Never>(big) })
        .await
        .unwrap();
    let out = e
        .run(&msg("big", "p"), || async { Ok::<_, Never>(()) })
        .await
        .unwrap();
    match out {
        Outcome::Duplicate { result } => assert_eq!(result.as_deref(), Some(&expected[..])),
        other => panic!("expected Duplicate, got {other:?}"),
    }
    let too_big = vec![0u8; 64 * 1024 + 1];
    let out = e
        .run(&msg("too-big", "p"), || async { Ok::<_, Never>(too_big) })
        .await;
    assert!(
        matches!(
            out,
            Err(EngineError::Store(StoreError::ResultTooLarge { .. }))
        ),
        "{out:?}"
    );
    // The refused claim was given back: a redelivery runs again.
    let rec = store.get(&key(&scope, "too-big")).await.unwrap().unwrap();
    assert_eq!(rec.state, State::Consuming);
    let out = e
        .run(&msg("too-big", "p"), || async { Ok::<_, Never>(()) })
        .await
        .unwrap();
    assert!(
        matches!(out, Outcome::Processed { attempt: 2, .. }),
        "{out:?}"
    );
}

/// `purge` and `stats` see exactly one scope.
pub async fn purge_and_stats_see_one_scope<S: Store>(store: Arc<S>) {
    let (a, b) = (fresh_scope(), fresh_scope());
    let lease = Duration::from_secs(60);
    for i in 0..5 {
        let k = key(&a, &format!("a{i}"));
        let t = token_of(&store.claim(&request(k.clone(), b"p", lease)).await.unwrap());
        if i < 3 {
            store.complete(&k, t, None, lease).await.unwrap();
        }
    }
    store
        .claim(&request(key(&b, "b0"), b"p", lease))
        .await
        .unwrap();
    let s = store.stats(&a).await.unwrap();
    assert_eq!((s.consumed, s.consuming), (3, 2));
    assert_eq!(store.purge(&a).await.unwrap(), 5);
    assert_eq!(store.stats(&a).await.unwrap(), Default::default());
    assert_eq!(store.stats(&b).await.unwrap().consuming, 1);
    assert!(store.get(&key(&a, "a0")).await.unwrap().is_none());
}

/// Rule 8: with the store unreachable the engine fails closed (an error, the handler not run,
/// nothing to acknowledge) unless fail-open was chosen, which runs the handler unprotected.
pub async fn unreachable_store_fails_closed_unless_opted_open<S: Store>(store: Arc<S>) {
    let runs = Arc::new(AtomicUsize::new(0));
    let handler = |runs: Arc<AtomicUsize>| {
        move || async move {
            runs.fetch_add(1, Ordering::SeqCst);
            Ok::<_, Never>(())
        }
    };
    let closed = engine(store.clone(), EngineConfig::new(fresh_scope()));
    let out = closed.run(&msg("m", "p"), handler(runs.clone())).await;
    assert!(
        matches!(out, Err(EngineError::Store(StoreError::Unavailable(_)))),
        "{out:?}"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 0);

    let open = engine(
        store,
        EngineConfig::new(fresh_scope()).fail_mode(FailMode::Open),
    );
    let out = open
        .run(&msg("m", "p"), handler(runs.clone()))
        .await
        .unwrap();
    assert!(
        matches!(
            out,
            Outcome::Processed {
                protected: false,
                ..
            }
        ),
        "{out:?}"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

/// Waits until the wall clock (which stores use for leases) has passed `deadline`.
async fn wait_until_past(deadline: i64) {
    while now_ms() <= deadline {
        tokio::time::sleep(Duration::from_millis(
            (deadline - now_ms()).clamp(1, 50) as u64
        ))
        .await;
    }
}
