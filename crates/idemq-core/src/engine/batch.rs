//! Many messages at once: one `claim_batch`, the acquired handlers side by side, one
//! `complete_batch`.

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Instant;

use futures_util::future::join_all;
use futures_util::FutureExt;
use metrics::{counter, histogram};
use tracing::{warn, Instrument};

use super::{Engine, FailMode, HandlerOutput, Outcome};
use crate::error::EngineError;
use crate::key::RecordKey;
use crate::message::Message;
use crate::metrics as m;
use crate::record::{Claim, ClaimRequest, Completion, FencingToken};
use crate::store::StoreError;

/// One acquired claim of a batch, while its handler runs.
struct Owned {
    index: usize,
    token: FencingToken,
    attempt: u32,
}

impl<M: Message> Engine<M> {
    /// Runs `handler(i)` (called at most once for each `i`) for each `msgs[i]` whose key is neither consumed nor in flight, with
    /// one [`claim_batch`](crate::Store::claim_batch) for the whole batch and one
    /// [`complete_batch`](crate::Store::complete_batch) for the handlers that succeeded.
    ///
    /// Answers in order, each as [`Engine::run`] would answer that message alone, with leases,
    /// heartbeats and fencing unchanged. Copies of one key in the batch run once: the store
    /// answers the later copies "in progress" (the first copy holds the claim), and once the
    /// first copy's record is consumed they answer as its duplicates.
    ///
    /// A handler that panics leaves its claim to its lease, as a crash would; the others
    /// are completed or released first, then the panic goes on.
    pub async fn run_batch<F, Fut, T, E>(
        &self,
        msgs: &[M],
        handler: F,
    ) -> Vec<Result<Outcome<E>, EngineError>>
    where
        F: FnMut(usize) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        T: HandlerOutput,
    {
        let span =
            tracing::info_span!("idemq.batch", scope = %self.config().scope, size = msgs.len());
        self.decide_batch(msgs, handler).instrument(span).await
    }

    async fn decide_batch<F, Fut, T, E>(
        &self,
        msgs: &[M],
        mut handler: F,
    ) -> Vec<Result<Outcome<E>, EngineError>>
    where
        F: FnMut(usize) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        T: HandlerOutput,
    {
        let mut out: Vec<Option<Result<Outcome<E>, EngineError>>> =
            (0..msgs.len()).map(|_| None).collect();
        // Positions of the keyable messages, and their requests in the same order.
        let mut keyed = Vec::with_capacity(msgs.len());
        let mut reqs = Vec::with_capacity(msgs.len());
        for (i, msg) in msgs.iter().enumerate() {
            match self.identify(msg) {
                Ok((key, fingerprint)) => {
                    keyed.push(i);
                    reqs.push(self.claim_request(key, fingerprint));
                }
                Err(e) => out[i] = Some(Err(e)),
            }
        }
        if reqs.is_empty() {
            return out.into_iter().map(Option::unwrap).collect();
        }

        let claims = match self.inner.store.claim_batch(&reqs).await {
            Ok(claims) => claims,
            Err(e) => {
                self.batch_store_down(e, &keyed, &mut out, &mut handler)
                    .await;
                return out.into_iter().map(Option::unwrap).collect();
            }
        };

        let mut owned = Vec::new();
        for (r, claim) in claims.into_iter().enumerate() {
            let i = keyed[r];
            match claim {
                Claim::Acquired {
                    token,
                    attempt,
                    takeover,
                } => {
                    self.count_acquired(takeover);
                    owned.push((
                        r,
                        Owned {
                            index: i,
                            token,
                            attempt,
                        },
                    ));
                }
                settled => {
                    let outcome = Outcome::settled(settled, reqs[r].fingerprint)
                        .expect("only Acquired is unsettled");
                    self.count_claim(outcome.name());
                    out[i] = Some(Ok(outcome));
                }
            }
        }

        let runs = owned.iter().map(|(r, o)| {
            let started = Instant::now();
            let fut = self.with_heartbeat(&reqs[*r].key, o.token, handler(o.index));
            async move {
                // A panic is held until the batch-mates are settled in the store: dying at
                // once would leave a batch-mate whose effect is done uncompleted.
                let value = AssertUnwindSafe(fut).catch_unwind().await;
                histogram!(m::HANDLER_SECONDS, "scope" => self.scope()).record(started.elapsed());
                value
            }
        });
        let results = join_all(runs).await;

        let mut done = Vec::new();
        let mut failed = Vec::new();
        let mut panicked = None;
        for ((r, o), result) in owned.into_iter().zip(results) {
            let result = match result {
                Ok(result) => result,
                // As a crash would: the claim is left to its lease, neither completed nor
                // released.
                Err(payload) => {
                    panicked.get_or_insert(payload);
                    continue;
                }
            };
            match result {
                Ok(value) => {
                    counter!(m::HANDLED, "scope" => self.scope(), "result" => "ok").increment(1);
                    done.push((r, o, value.into_stored()));
                }
                Err(error) => {
                    counter!(m::HANDLED, "scope" => self.scope(), "result" => "error").increment(1);
                    failed.push((r, o, error));
                }
            }
        }

        let releases = failed
            .iter()
            .map(|(r, o, _)| self.release_quietly(&reqs[*r].key, o.token));
        join_all(releases).await;
        for (_, o, error) in failed {
            out[o.index] = Some(Ok(Outcome::Failed {
                error,
                attempt: o.attempt,
            }));
        }

        let answers = self.complete_all(&reqs, &done).await;
        // The result each key's first copy stored, for the later copies.
        let mut consumed: HashMap<&RecordKey, Option<bytes::Bytes>> = HashMap::new();
        for ((r, o, result), answer) in done.into_iter().zip(answers) {
            out[o.index] = Some(match answer {
                Ok(()) => {
                    consumed.insert(&reqs[r].key, result.clone());
                    Ok(Outcome::Processed {
                        result,
                        attempt: o.attempt,
                        protected: true,
                    })
                }
                Err(e) => Err(e),
            });
        }
        if let Some(payload) = panicked {
            std::panic::resume_unwind(payload);
        }
        // A later copy of a key this batch consumed was told "in progress" by its own first
        // copy's claim; a claim made now would answer "done".
        for (r, &i) in keyed.iter().enumerate() {
            if let Some(Ok(Outcome::InProgress { .. })) = out[i] {
                if let Some(result) = consumed.get(&reqs[r].key) {
                    out[i] = Some(Ok(Outcome::Duplicate {
                        result: result.clone(),
                    }));
                }
            }
        }
        out.into_iter()
            .map(|o| o.expect("every message answered"))
            .collect()
    }

    /// Completes the successful runs in one `complete_batch`; answers in their order.
    async fn complete_all(
        &self,
        reqs: &[ClaimRequest],
        done: &[(usize, Owned, Option<bytes::Bytes>)],
    ) -> Vec<Result<(), EngineError>> {
        let cfg = &self.inner.config;
        let mut answers: Vec<Option<Result<(), EngineError>>> = Vec::with_capacity(done.len());
        let mut items = Vec::with_capacity(done.len());
        let mut sent = Vec::with_capacity(done.len());
        for (n, (r, o, result)) in done.iter().enumerate() {
            match result {
                Some(res) if res.len() > cfg.max_result_bytes => {
                    answers.push(Some(Err(self
                        .too_large(&reqs[*r].key, o.token, res.len())
                        .await)));
                }
                _ => {
                    answers.push(None);
                    sent.push(n);
                    items.push(Completion {
                        key: &reqs[*r].key,
                        token: o.token,
                        result: result.as_deref(),
                        retention: cfg.retention,
                    });
                }
            }
        }
        if !items.is_empty() {
            match self.inner.store.complete_batch(&items).await {
                Ok(each) => {
                    for ((n, item), answer) in sent.iter().zip(&items).zip(each) {
                        answers[*n] = Some(match answer {
                            Ok(()) => Ok(()),
                            Err(e) => {
                                self.count_store_error("complete", &e);
                                if matches!(e, StoreError::ResultTooLarge { .. }) {
                                    self.release_quietly(item.key, item.token).await;
                                }
                                Err(e.into())
                            }
                        });
                    }
                }
                Err(e) => {
                    self.count_store_error("complete", &e);
                    for n in &sent {
                        answers[*n] = Some(Err(copy_error(&e).into()));
                    }
                }
            }
        }
        answers
            .into_iter()
            .map(|a| a.expect("every completion answered"))
            .collect()
    }

    /// A result too big for the record: the claim is given back, as on the single path.
    async fn too_large(&self, key: &RecordKey, token: FencingToken, size: usize) -> EngineError {
        let e = StoreError::ResultTooLarge {
            size,
            max: self.inner.config.max_result_bytes,
        };
        self.count_store_error("complete", &e);
        self.release_quietly(key, token).await;
        e.into()
    }

    async fn release_quietly(&self, key: &RecordKey, token: FencingToken) {
        if let Err(e) = self.inner.store.release(key, token).await {
            // The claim stays until its lease expires; the retry then takes it over.
            self.count_store_error("release", &e);
            warn!(error = %e, "could not release a failed claim");
        }
    }

    /// The claims could not be made: fail-closed answers the store error for every keyed
    /// message; fail-open runs them all unprotected.
    async fn batch_store_down<F, Fut, T, E>(
        &self,
        e: StoreError,
        keyed: &[usize],
        out: &mut [Option<Result<Outcome<E>, EngineError>>],
        handler: &mut F,
    ) where
        F: FnMut(usize) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        T: HandlerOutput,
    {
        self.count_store_error("claim", &e);
        if self.inner.config.fail_mode == FailMode::Closed {
            for &i in keyed {
                out[i] = Some(Err(copy_error(&e).into()));
            }
            return;
        }
        warn!(error = %e, "store unavailable: handling the batch unprotected (fail-open)");
        counter!(m::UNPROTECTED, "scope" => self.scope()).increment(keyed.len() as u64);
        let results = join_all(keyed.iter().map(|&i| handler(i))).await;
        for (&i, result) in keyed.iter().zip(results) {
            out[i] = Some(Ok(match result {
                Ok(value) => Outcome::Processed {
                    result: value.into_stored(),
                    attempt: 1,
                    protected: false,
                },
                Err(error) => Outcome::Failed { error, attempt: 1 },
            }));
        }
    }
}

/// One store error told to every message of a batch (a `StoreError` is not `Clone`).
fn copy_error(e: &StoreError) -> StoreError {
    match e {
        StoreError::LeaseLost { key } => StoreError::LeaseLost { key: key.clone() },
        StoreError::ResultTooLarge { size, max } => StoreError::ResultTooLarge {
            size: *size,
            max: *max,
        },
        StoreError::Corrupt(s) => StoreError::Corrupt(s.clone()),
        StoreError::Config(s) => StoreError::Config(s.clone()),
        StoreError::Unavailable(source) => {
            StoreError::Unavailable(Box::new(std::io::Error::other(source.to_string())))
        }
    }
}
