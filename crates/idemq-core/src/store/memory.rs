//! An in-process store for unit tests and the demo. It forgets everything on restart.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;

use super::{transition, ScopeStats, Store, StoreError};
use crate::key::{RecordKey, Scope};
use crate::record::{Claim, ClaimRequest, FencingToken, Record, State};
use crate::time::{now_ms, UnixMillis};

/// How many writes pass between two sweeps of expired records.
const SWEEP_EVERY: u32 = 1024;

/// A store in a `HashMap` behind a mutex; expired records are swept as writes go by, so its
/// size stays bounded by what the retention keeps alive.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    records: HashMap<RecordKey, Record>,
    writes: u32,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many records (expired ones not yet swept included) the store holds.
    pub fn len(&self) -> usize {
        self.lock().records.len()
    }

    /// True when the store holds no record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a record half-written: every write is
        // one `insert` of a record built beforehand.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn transition(
        &self,
        key: &RecordKey,
        f: impl FnOnce(Option<&Record>, UnixMillis) -> Option<Record>,
    ) -> Result<Record, StoreError> {
        let mut inner = self.lock();
        let now = now_ms();
        let next = f(inner.records.get(key), now)
            .ok_or_else(|| StoreError::LeaseLost { key: key.clone() })?;
        inner.write(key.clone(), next.clone(), now);
        Ok(next)
    }
}

impl Inner {
    fn write(&mut self, key: RecordKey, rec: Record, now: UnixMillis) {
        self.records.insert(key, rec);
        self.writes += 1;
        if self.writes >= SWEEP_EVERY {
            self.writes = 0;
            self.records.retain(|_, r| r.expires_at > now);
        }
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn claim(&self, req: &ClaimRequest) -> Result<Claim, StoreError> {
        let mut inner = self.lock();
        let now = now_ms();
        let (claim, write) = transition::claim(inner.records.get(&req.key), req, now);
        if let Some(rec) = write {
            inner.write(req.key.clone(), rec, now);
        }
        Ok(claim)
    }

    async fn complete(
        &self,
        key: &RecordKey,
        token: FencingToken,
        result: Option<&[u8]>,
        retention: Duration,
    ) -> Result<(), StoreError> {
        self.transition(key, |cur, now| {
            transition::complete(cur, token, result, retention, now)
        })
        .map(drop)
    }

    async fn release(&self, key: &RecordKey, token: FencingToken) -> Result<(), StoreError> {
        self.transition(key, |cur, now| transition::release(cur, token, now))
            .map(drop)
    }

    async fn extend(
        &self,
        key: &RecordKey,
        token: FencingToken,
        lease: Duration,
    ) -> Result<UnixMillis, StoreError> {
        self.transition(key, |cur, now| transition::extend(cur, token, lease, now))
            .map(|r| r.lease_until)
    }

    async fn get(&self, key: &RecordKey) -> Result<Option<Record>, StoreError> {
        let now = now_ms();
        Ok(self
            .lock()
            .records
            .get(key)
            .filter(|r| r.expires_at > now)
            .cloned())
    }

    async fn purge(&self, scope: &Scope) -> Result<u64, StoreError> {
        let mut inner = self.lock();
        let before = inner.records.len();
        inner.records.retain(|k, _| &k.scope != scope);
        Ok((before - inner.records.len()) as u64)
    }

    async fn stats(&self, scope: &Scope) -> Result<ScopeStats, StoreError> {
        let now = now_ms();
        let inner = self.lock();
        let mut stats = ScopeStats::default();
        for r in inner
            .records
            .iter()
            .filter(|(k, r)| &k.scope == scope && r.expires_at > now)
            .map(|(_, r)| r)
        {
            match r.state {
                State::Consuming => stats.consuming += 1,
                State::Consumed => stats.consumed += 1,
            }
        }
        Ok(stats)
    }
}
