//! A two-tier store: a cache (Redis) in front of a durable store (a SQL table).
//!
//! The durable store is the truth; the cache only remembers which keys were *consumed*, so
//! the common duplicate is answered without touching the database.
//!
//! - **claim** looks in the cache first: a consumed record there is a duplicate (or a
//!   conflict, by fingerprint). Anything else (a miss, a cache error, a record still being
//!   consumed) is decided by the durable store, whose answer stands.
//! - **complete** writes the durable store first and only then the cache, so the cache never
//!   claims more than the durable store holds. A batch is one `complete_batch` on the
//!   durable store, then one `claim_batch` and one `complete_batch` on the cache.
//! - **release** and **extend** go to the durable store only: leases live there.
//!
//! So if the cache is down or was restarted empty, every claim falls through to the durable
//! store and nothing is processed twice; if the durable store is down, claims fail and
//! nothing new is acknowledged (a key the cache remembers as consumed was durably consumed
//! before, so acknowledging its duplicate is safe).
#![warn(missing_docs)]

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use idemq_core::adapter::HandlerFuture;
use idemq_core::store::{ScopeStats, StoreError, TransactionalStore};
use idemq_core::time::{now_ms, UnixMillis};
use idemq_core::{
    Claim, ClaimRequest, Completion, FencingToken, Record, RecordKey, Scope, State, Store,
};
use idemq_core::{EngineConfig, EngineError, Fingerprint, HandlerOutput, IdempotencyKey, Outcome};
use metrics::counter;
use tracing::debug;

/// Counter: claims answered by the cache, by `result` (`hit`, `miss`, `error`).
pub const CACHE_LOOKUPS: &str = "idemq_tiered_cache_lookups_total";

/// How many claims in flight [`TieredStore`] remembers the fingerprint of.
const PENDING_CAP: usize = 65_536;

/// The lease of the cache's claim that marks a key consumed: only held between its claim
/// and its completion.
const MARK_LEASE: Duration = Duration::from_secs(5);

/// A cache store in front of a durable store.
#[derive(Debug)]
pub struct TieredStore<C, D> {
    cache: C,
    durable: D,
    /// The fingerprint of each fresh claim this store made and has not completed yet, so
    /// `complete` can copy it into the cache without reading the durable record back.
    pending: Mutex<HashMap<(RecordKey, FencingToken), Pending>>,
}

#[derive(Debug)]
struct Pending {
    fingerprint: Option<Fingerprint>,
    /// Past its lease, an entry may be dropped to make room (its owner was likely lost).
    lease_until: UnixMillis,
}

impl<C: Store, D: Store> TieredStore<C, D> {
    /// Puts `cache` in front of `durable`.
    pub fn new(cache: C, durable: D) -> Self {
        Self {
            cache,
            durable,
            pending: Mutex::default(),
        }
    }

    /// The cache tier.
    pub fn cache(&self) -> &C {
        &self.cache
    }

    /// The durable tier.
    pub fn durable(&self) -> &D {
        &self.durable
    }

    /// Tells the cache that `key` was consumed with `result` (best effort): after a
    /// completion, and after the durable store answered a claim with `Done`.
    pub async fn remember(&self, req: &ClaimRequest, result: Option<&[u8]>, retention: Duration) {
        let marked = match self.cache.claim(req).await {
            Ok(Claim::Acquired { token, .. }) => {
                self.cache
                    .complete(&req.key, token, result, retention)
                    .await
            }
            // Already remembered, or another consumer is writing the same mark.
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = marked {
            debug!(error = %e, key = %req.key, "could not remember a consumed key in the cache");
        }
    }

    /// [`TieredStore::remember`] for many keys: one `claim_batch` and one `complete_batch`
    /// on the cache. `results` go with `reqs`, in order.
    async fn remember_batch(&self, reqs: &[ClaimRequest], results: &[Option<&[u8]>]) {
        if reqs.is_empty() {
            return;
        }
        let unremembered = "could not remember consumed keys in the cache";
        let claims = match self.cache.claim_batch(reqs).await {
            Ok(claims) => claims,
            Err(e) => {
                debug!(error = %e, keys = reqs.len(), "{unremembered}");
                return;
            }
        };
        // A key the cache holds already (or twice in the batch) is left as it is.
        let marks: Vec<Completion<'_>> = reqs
            .iter()
            .zip(claims)
            .zip(results)
            .filter_map(|((r, claim), result)| match claim {
                Claim::Acquired { token, .. } => Some(Completion {
                    key: &r.key,
                    token,
                    result: *result,
                    retention: r.retention,
                }),
                _ => None,
            })
            .collect();
        if marks.is_empty() {
            return;
        }
        match self.cache.complete_batch(&marks).await {
            Ok(each) => {
                for (m, e) in marks.iter().zip(each) {
                    if let Err(e) = e {
                        debug!(error = %e, key = %m.key, "{unremembered}");
                    }
                }
            }
            Err(e) => debug!(error = %e, keys = marks.len(), "{unremembered}"),
        }
    }

    async fn cached(&self, req: &ClaimRequest) -> Option<Claim> {
        match self.cache.get(&req.key).await {
            Ok(found) => hit(req, found),
            Err(e) => {
                lookup_failed(&e, 1);
                None
            }
        }
    }

    /// Asks the cache about every request in one call; a failed call is a miss for all.
    async fn cached_batch(&self, reqs: &[ClaimRequest]) -> Vec<Option<Claim>> {
        let keys: Vec<RecordKey> = reqs.iter().map(|r| r.key.clone()).collect();
        match self.cache.get_batch(&keys).await {
            Ok(found) => reqs.iter().zip(found).map(|(r, f)| hit(r, f)).collect(),
            Err(e) => {
                lookup_failed(&e, reqs.len());
                vec![None; reqs.len()]
            }
        }
    }

    /// Notes the fingerprint of a fresh claim (attempt 1: the record holds the request's
    /// fingerprint) for `complete`.
    fn note(&self, req: &ClaimRequest, claim: &Claim) {
        let Claim::Acquired {
            token, attempt: 1, ..
        } = claim
        else {
            return;
        };
        let now = now_ms();
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if pending.len() >= PENDING_CAP {
            pending.retain(|_, p| p.lease_until > now);
            if pending.len() >= PENDING_CAP {
                return;
            }
        }
        pending.insert(
            (req.key.clone(), *token),
            Pending {
                fingerprint: req.fingerprint,
                lease_until: now + req.lease.as_millis() as UnixMillis,
            },
        );
    }

    fn take_pending(&self, key: &RecordKey, token: FencingToken) -> Option<Pending> {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.remove(&(key.clone(), token))
    }

    async fn decided(&self, req: &ClaimRequest, claim: Claim) -> Claim {
        if let Claim::Done { result } = &claim {
            // The cache lost this key (restart, eviction): put it back for the next duplicate.
            let left = self
                .durable
                .get(&req.key)
                .await
                .ok()
                .flatten()
                .map(|r| Duration::from_millis((r.expires_at - now_ms()).max(1) as u64));
            if let Some(retention) = left {
                self.remember(req, result.as_deref(), retention).await;
            }
        }
        claim
    }
}

/// The cache's answer for `req`, given the record it holds: only a consumed record counts.
fn hit(req: &ClaimRequest, found: Option<Record>) -> Option<Claim> {
    let hit = found.filter(|r| r.state == State::Consumed).map(|r| {
        match (r.fingerprint, req.fingerprint) {
            (Some(have), Some(want)) if have != want => Claim::Conflict { existing: have },
            _ => Claim::Done { result: r.result },
        }
    });
    let label = if hit.is_some() { "hit" } else { "miss" };
    counter!(CACHE_LOOKUPS, "result" => label).increment(1);
    hit
}

fn lookup_failed(e: &StoreError, lookups: usize) {
    counter!(CACHE_LOOKUPS, "result" => "error").increment(lookups as u64);
    debug!(error = %e, "cache lookup failed; asking the durable store");
}

/// With a SQL store behind it, the dedup row commits in the business transaction and only
/// then is the key remembered in the cache.
impl<C: Store, D: TransactionalStore> TransactionalStore for TieredStore<C, D> {
    type Conn = D::Conn;

    async fn run_in_tx<'a, F, T, E>(
        &'a self,
        config: &'a EngineConfig,
        key: IdempotencyKey,
        fingerprint: Option<Fingerprint>,
        handler: F,
    ) -> Result<Outcome<E>, EngineError>
    where
        F: for<'t> FnOnce(&'t mut Self::Conn) -> HandlerFuture<'t, T, E> + Send + 'a,
        T: HandlerOutput + Send + 'a,
        E: Send + 'a,
    {
        let req = ClaimRequest {
            key: RecordKey::new(config.scope.clone(), key.clone()),
            fingerprint,
            lease: config.lease,
            retention: config.retention,
        };
        if let Some(hit) = self
            .cached(&req)
            .await
            .and_then(|c| Outcome::settled(c, fingerprint))
        {
            return Ok(hit);
        }
        let out = self
            .durable
            .run_in_tx(config, key, fingerprint, handler)
            .await?;
        if let Outcome::Processed { result, .. } | Outcome::Duplicate { result } = &out {
            self.remember(&req, result.as_deref(), config.retention)
                .await;
        }
        Ok(out)
    }
}

#[async_trait]
impl<C: Store, D: Store> Store for TieredStore<C, D> {
    async fn claim(&self, req: &ClaimRequest) -> Result<Claim, StoreError> {
        if let Some(hit) = self.cached(req).await {
            return Ok(hit);
        }
        let claim = self.durable.claim(req).await?;
        self.note(req, &claim);
        Ok(self.decided(req, claim).await)
    }

    async fn claim_batch(&self, reqs: &[ClaimRequest]) -> Result<Vec<Claim>, StoreError> {
        let out = self.cached_batch(reqs).await;
        let misses: Vec<ClaimRequest> = reqs
            .iter()
            .zip(&out)
            .filter(|(_, hit)| hit.is_none())
            .map(|(r, _)| r.clone())
            .collect();
        let mut decided = self.durable.claim_batch(&misses).await?.into_iter();
        let mut claims = Vec::with_capacity(reqs.len());
        for (req, hit) in reqs.iter().zip(out) {
            let claim = match hit {
                Some(hit) => hit,
                None => {
                    let claim = decided.next().ok_or_else(|| {
                        StoreError::Corrupt("durable store answered too few claims".into())
                    })?;
                    self.note(req, &claim);
                    self.decided(req, claim).await
                }
            };
            claims.push(claim);
        }
        Ok(claims)
    }

    async fn complete(
        &self,
        key: &RecordKey,
        token: FencingToken,
        result: Option<&[u8]>,
        retention: Duration,
    ) -> Result<(), StoreError> {
        let noted = self.take_pending(key, token);
        self.durable.complete(key, token, result, retention).await?;
        let fingerprint = match noted {
            Some(p) => p.fingerprint,
            // Claimed through another store, or a takeover: the durable record knows.
            None => self
                .durable
                .get(key)
                .await
                .ok()
                .flatten()
                .and_then(|r| r.fingerprint),
        };
        let req = ClaimRequest {
            key: key.clone(),
            fingerprint,
            lease: MARK_LEASE,
            retention,
        };
        self.remember(&req, result, retention).await;
        Ok(())
    }

    async fn complete_batch(
        &self,
        items: &[Completion<'_>],
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let noted: Vec<Option<Pending>> = items
            .iter()
            .map(|c| self.take_pending(c.key, c.token))
            .collect();
        let answers = self.durable.complete_batch(items).await?;
        if answers.len() != items.len() {
            return Err(StoreError::Corrupt(
                "durable store answered too few completions".into(),
            ));
        }
        // The fingerprints this store did not note (another store's claims, takeovers), in
        // one read of the durable records; a failed read leaves them unknown, as on `complete`.
        let unknown: Vec<RecordKey> = items
            .iter()
            .zip(&answers)
            .zip(&noted)
            .filter(|((_, a), n)| a.is_ok() && n.is_none())
            .map(|((c, _), _)| c.key.clone())
            .collect();
        let mut read = match unknown.is_empty() {
            true => Vec::new(),
            false => self.durable.get_batch(&unknown).await.unwrap_or_default(),
        }
        .into_iter();
        let (mut reqs, mut results) = (Vec::new(), Vec::new());
        for ((c, a), n) in items.iter().zip(&answers).zip(noted) {
            if a.is_err() {
                continue;
            }
            let fingerprint = match n {
                Some(p) => p.fingerprint,
                None => read.next().flatten().and_then(|r| r.fingerprint),
            };
            reqs.push(ClaimRequest {
                key: c.key.clone(),
                fingerprint,
                lease: MARK_LEASE,
                retention: c.retention,
            });
            results.push(c.result);
        }
        self.remember_batch(&reqs, &results).await;
        Ok(answers)
    }

    async fn release(&self, key: &RecordKey, token: FencingToken) -> Result<(), StoreError> {
        self.take_pending(key, token);
        self.durable.release(key, token).await
    }

    async fn extend(
        &self,
        key: &RecordKey,
        token: FencingToken,
        lease: Duration,
    ) -> Result<i64, StoreError> {
        self.durable.extend(key, token, lease).await
    }

    async fn get(&self, key: &RecordKey) -> Result<Option<Record>, StoreError> {
        self.durable.get(key).await
    }

    async fn get_batch(&self, keys: &[RecordKey]) -> Result<Vec<Option<Record>>, StoreError> {
        self.durable.get_batch(keys).await
    }

    async fn purge(&self, scope: &Scope) -> Result<u64, StoreError> {
        let removed = self.durable.purge(scope).await?;
        if let Err(e) = self.cache.purge(scope).await {
            debug!(error = %e, "could not purge the cache tier");
        }
        Ok(removed)
    }

    async fn stats(&self, scope: &Scope) -> Result<ScopeStats, StoreError> {
        self.durable.stats(scope).await
    }
}
