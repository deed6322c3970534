//! The engine: claim, run the handler, then complete or release.

mod batch;
mod config;
mod outcome;
mod tx;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use metrics::{counter, histogram, SharedString};
use tracing::{warn, Instrument};

pub use config::{EngineConfig, FailMode};
pub use outcome::{HandlerOutput, Outcome};
pub use tx::TxEngine;

use crate::error::EngineError;
use crate::key::{Fingerprint, FingerprintStrategy, IdempotencyKey, KeyStrategy, RecordKey};
use crate::message::Message;
use crate::metrics as m;
use crate::record::{Claim, ClaimRequest, FencingToken};
use crate::store::{Store, StoreError};

/// Runs handlers effectively once per idempotency key. Cheap to clone.
pub struct Engine<M> {
    inner: Arc<Inner<M>>,
}

struct Inner<M> {
    store: Arc<dyn Store>,
    config: EngineConfig,
    keys: KeyStrategy<M>,
    fingerprints: FingerprintStrategy<M>,
    scope_label: SharedString,
}

impl<M> Clone for Inner<M> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            config: self.config.clone(),
            keys: self.keys.clone(),
            fingerprints: self.fingerprints.clone(),
            scope_label: self.scope_label.clone(),
        }
    }
}

impl<M> Clone for Engine<M> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<M: Message> Engine<M> {
    /// An engine over `store` for one consumer.
    pub fn new(store: impl Store, config: EngineConfig, keys: KeyStrategy<M>) -> Self {
        Self::with_shared_store(Arc::new(store), config, keys)
    }

    /// An engine over a store shared with other engines.
    pub fn with_shared_store(
        store: Arc<dyn Store>,
        config: EngineConfig,
        keys: KeyStrategy<M>,
    ) -> Self {
        let scope_label = SharedString::from(config.scope.as_str().to_owned());
        let fingerprints = FingerprintStrategy::default_for(&keys);
        Self {
            inner: Arc::new(Inner {
                store,
                config,
                keys,
                fingerprints,
                scope_label,
            }),
        }
    }

    /// The same engine with another fingerprint strategy (the default follows the key
    /// strategy: see [`FingerprintStrategy::default_for`]).
    pub fn fingerprint(self, fingerprints: FingerprintStrategy<M>) -> Self {
        let mut inner = (*self.inner).clone();
        inner.fingerprints = fingerprints;
        Self {
            inner: Arc::new(inner),
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// The record key and fingerprint of a message, or why it cannot be keyed.
    pub fn identify(&self, msg: &M) -> Result<(RecordKey, Option<Fingerprint>), EngineError> {
        let key = self.inner.keys.key_of(msg)?;
        let fingerprint = self.inner.fingerprints.of(msg)?;
        Ok((self.record_key(key), fingerprint))
    }

    /// The record key of `key` in this engine's scope.
    pub fn record_key(&self, key: IdempotencyKey) -> RecordKey {
        RecordKey::new(self.inner.config.scope.clone(), key)
    }

    /// The claim request this engine makes for a key.
    pub fn claim_request(&self, key: RecordKey, fingerprint: Option<Fingerprint>) -> ClaimRequest {
        ClaimRequest {
            key,
            fingerprint,
            lease: self.inner.config.lease,
            retention: self.inner.config.retention,
        }
    }

    /// Runs `handler` for `msg` unless its key was consumed already or is in flight.
    ///
    /// `Err` means nothing may be acknowledged: a message that cannot be keyed
    /// ([`EngineError::Key`]) belongs on the dead-letter path; the others are redelivered.
    pub async fn run<F, Fut, T, E>(&self, msg: &M, handler: F) -> Result<Outcome<E>, EngineError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        T: HandlerOutput,
    {
        let (key, fingerprint) = self.identify(msg)?;
        self.run_keyed(key, fingerprint, handler).await
    }

    /// Like [`Engine::run`] for a key already taken from the message.
    pub async fn run_keyed<F, Fut, T, E>(
        &self,
        key: RecordKey,
        fingerprint: Option<Fingerprint>,
        handler: F,
    ) -> Result<Outcome<E>, EngineError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        T: HandlerOutput,
    {
        let span = tracing::info_span!(
            "idemq.message",
            scope = %key.scope,
            key = %key.key,
            outcome = tracing::field::Empty,
        );
        async move {
            let out = self.decide(key, fingerprint, handler).await;
            let outcome = match &out {
                Ok(o) => o.name(),
                Err(EngineError::Key(_)) => "unkeyable",
                Err(EngineError::LeaseLost { .. }) => "lease_lost",
                Err(EngineError::Store(_)) => "store_error",
            };
            tracing::Span::current().record("outcome", outcome);
            out
        }
        .instrument(span)
        .await
    }

    async fn decide<F, Fut, T, E>(
        &self,
        key: RecordKey,
        fingerprint: Option<Fingerprint>,
        handler: F,
    ) -> Result<Outcome<E>, EngineError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        T: HandlerOutput,
    {
        let req = self.claim_request(key, fingerprint);
        let claim = match self.inner.store.claim(&req).await {
            Ok(claim) => claim,
            Err(e) => return self.store_down(e, handler).await,
        };
        let (token, attempt) = match claim {
            Claim::Acquired {
                token,
                attempt,
                takeover,
            } => {
                self.count_acquired(takeover);
                (token, attempt)
            }
            settled => {
                let outcome =
                    Outcome::settled(settled, req.fingerprint).expect("only Acquired is unsettled");
                self.count_claim(outcome.name());
                return Ok(outcome);
            }
        };

        let key = req.key;
        let started = Instant::now();
        let out = self.with_heartbeat(&key, token, handler()).await;
        histogram!(m::HANDLER_SECONDS, "scope" => self.scope()).record(started.elapsed());
        match out {
            Ok(value) => {
                counter!(m::HANDLED, "scope" => self.scope(), "result" => "ok").increment(1);
                let result = value.into_stored();
                self.complete(&key, token, result.as_deref()).await?;
                Ok(Outcome::Processed {
                    result,
                    attempt,
                    protected: true,
                })
            }
            Err(error) => {
                counter!(m::HANDLED, "scope" => self.scope(), "result" => "error").increment(1);
                if let Err(e) = self.inner.store.release(&key, token).await {
                    // The claim stays until its lease expires; the retry then takes it over.
                    self.count_store_error("release", &e);
                    warn!(error = %e, "could not release a failed claim");
                }
                Ok(Outcome::Failed { error, attempt })
            }
        }
    }

    async fn complete(
        &self,
        key: &RecordKey,
        token: FencingToken,
        result: Option<&[u8]>,
    ) -> Result<(), EngineError> {
        let cfg = &self.inner.config;
        let outcome = match result {
            Some(r) if r.len() > cfg.max_result_bytes => Err(StoreError::ResultTooLarge {
                size: r.len(),
                max: cfg.max_result_bytes,
            }),
            _ => {
                self.inner
                    .store
                    .complete(key, token, result, cfg.retention)
                    .await
            }
        };
        if let Err(e) = outcome {
            self.count_store_error("complete", &e);
            if matches!(e, StoreError::ResultTooLarge { .. }) {
                // The record cannot hold the result: give the claim back rather than
                // pretend it completed, so the error is seen and the message not lost.
                let _ = self.inner.store.release(key, token).await;
            }
            return Err(e.into());
        }
        Ok(())
    }

    async fn with_heartbeat<Fut: Future>(
        &self,
        key: &RecordKey,
        token: FencingToken,
        fut: Fut,
    ) -> Fut::Output {
        let Some(every) = self.inner.config.heartbeat.filter(|d| !d.is_zero()) else {
            return fut.await;
        };
        tokio::pin!(fut);
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            tokio::select! {
                out = &mut fut => return out,
                _ = tick.tick() => {
                    match self.inner.store.extend(key, token, self.inner.config.lease).await {
                        Ok(_) => {}
                        Err(e) => {
                            self.count_store_error("extend", &e);
                            warn!(error = %e, "lease heartbeat failed");
                            if matches!(e, StoreError::LeaseLost { .. }) {
                                // Nothing left to keep alive; completion will be refused.
                                return fut.await;
                            }
                        }
                    }
                }
            }
        }
    }

    async fn store_down<F, Fut, T, E>(
        &self,
        e: StoreError,
        handler: F,
    ) -> Result<Outcome<E>, EngineError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        T: HandlerOutput,
    {
        self.count_store_error("claim", &e);
        if self.inner.config.fail_mode == FailMode::Closed {
            return Err(EngineError::from(e));
        }
        warn!(error = %e, "store unavailable: handling the message unprotected (fail-open)");
        counter!(m::UNPROTECTED, "scope" => self.scope()).increment(1);
        Ok(match handler().await {
            Ok(value) => Outcome::Processed {
                result: value.into_stored(),
                attempt: 1,
                protected: false,
            },
            Err(error) => Outcome::Failed { error, attempt: 1 },
        })
    }

    fn scope(&self) -> SharedString {
        self.inner.scope_label.clone()
    }

    fn count_acquired(&self, takeover: bool) {
        self.count_claim("acquired");
        if takeover {
            counter!(m::TAKEOVERS, "scope" => self.scope()).increment(1);
        }
    }

    fn count_claim(&self, outcome: &'static str) {
        counter!(m::CLAIMS, "scope" => self.scope(), "outcome" => outcome).increment(1);
    }

    fn count_store_error(&self, op: &'static str, e: &StoreError) {
        let name = if matches!(e, StoreError::LeaseLost { .. }) {
            m::FENCING_REFUSALS
        } else {
            m::STORE_ERRORS
        };
        counter!(name, "scope" => self.scope(), "op" => op).increment(1);
    }
}
