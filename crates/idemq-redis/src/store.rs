//! The store: the [`Store`] trait over the Lua scripts, plus a pipelined complete-and-claim.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::Hash;
use std::io::Write;
use std::time::Duration;

use async_trait::async_trait;
use idemq_core::store::ScopeStats;
use idemq_core::time::UnixMillis;
use idemq_core::{
    Claim, ClaimRequest, Completion, FencingToken, Record, RecordKey, Scope, Store, StoreError,
};
use redis::{Cmd, RedisWrite, Value};

use crate::config::RedisStoreBuilder;
use crate::conn::{as_array, store_error, Conn, Node};
use crate::keys::{slot_of, HashTag, Layout};
use crate::{reply, scripts};

/// Durations are clamped to this many milliseconds (about 1,100 years) so deadlines stay
/// exact in Lua's doubles and valid for `PEXPIREAT`.
const MAX_MS: i64 = 1 << 45;
/// The most keys one script call handles; bigger batches are split (and sent concurrently)
/// so one call never blocks the server for long.
const MAX_KEYS_PER_CALL: usize = 1000;
/// The SCAN page size of `purge` and `stats`.
const SCAN_COUNT: usize = 1000;

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX).min(MAX_MS)
}

/// A [`Store`] on Redis, a single node or a Redis Cluster. Cheap to clone.
///
/// Each record is one string that Redis drops at the record's `expires_at` (`PEXPIREAT`), so
/// a new key is claimed with a single `SET NX` inside the script and completed with a
/// `GETEX` and a `SETRANGE`. Every transition is one Lua script run by `EVALSHA` (loaded on
/// demand) and decided by the server's clock.
///
/// # Record layout
///
/// Big-endian, as Lua's `struct.pack('>Bc32i8i8i8i8c1i8i8c1', ..)` writes it, then the
/// result. What a completion changes is the tail from byte 65, so it is one `SETRANGE`.
///
/// | byte | field                                                          |
/// |------|----------------------------------------------------------------|
/// | 0    | fingerprint length: 0 (none) or 32                             |
/// | 1    | fingerprint, 32 bytes (zeros when none)                        |
/// | 33   | token, attempts, created_at, lease_until: 8 bytes each, signed |
/// | 65   | state: `C` consuming, `D` consumed                             |
/// | 66   | expires_at, updated_at: 8 bytes each, signed                   |
/// | 82   | `n` no result, or `r` followed by the result to the end        |
///
/// Records of earlier versions, which were hashes, are not read (a claim on one fails as
/// [`StoreError::Corrupt`]): purge their scopes or move to a new prefix when upgrading.
#[derive(Clone)]
pub struct RedisStore {
    conn: Conn,
    layout: Layout,
    max_result_bytes: usize,
}

impl fmt::Debug for RedisStore {
    // No addresses: they may carry passwords.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("cluster", &self.conn.is_cluster())
            .field("prefix", &self.layout.prefix)
            .field("hash_tag", &self.layout.tag)
            .field("max_result_bytes", &self.max_result_bytes)
            .finish()
    }
}

impl RedisStore {
    pub(crate) fn new(conn: Conn, layout: Layout, max_result_bytes: usize) -> Self {
        Self {
            conn,
            layout,
            max_result_bytes,
        }
    }

    /// A builder to set the key prefix, hash tag, result limit and timeouts.
    pub fn builder() -> RedisStoreBuilder {
        RedisStoreBuilder::new()
    }

    /// Connects to one Redis node with the default configuration.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        RedisStoreBuilder::new().connect(url).await
    }

    /// A store for one Redis node that connects on first use; see
    /// [`RedisStoreBuilder::connect_lazy`].
    pub fn connect_lazy(url: &str) -> Result<Self, StoreError> {
        RedisStoreBuilder::new().connect_lazy(url)
    }

    /// Connects to a Redis Cluster through any of `urls` with the default configuration.
    pub async fn connect_cluster<S: AsRef<str>>(urls: &[S]) -> Result<Self, StoreError> {
        RedisStoreBuilder::new().connect_cluster(urls).await
    }

    /// A store for a Redis Cluster that connects on first use; see
    /// [`RedisStoreBuilder::connect_cluster_lazy`].
    pub fn connect_cluster_lazy<S: AsRef<str>>(urls: &[S]) -> Result<Self, StoreError> {
        RedisStoreBuilder::new().connect_cluster_lazy(urls)
    }

    /// True when the store talks to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.conn.is_cluster()
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.layout.prefix
    }

    /// Which part of a key is its cluster hash tag.
    pub fn hash_tag(&self) -> HashTag {
        self.layout.tag
    }

    /// The largest result `complete` accepts.
    pub fn max_result_bytes(&self) -> usize {
        self.max_result_bytes
    }

    /// The Redis key holding a record, for inspection with `redis-cli`.
    pub fn redis_key(&self, key: &RecordKey) -> String {
        self.layout.key(key)
    }

    pub(crate) async fn ensure_connected(&self) -> Result<(), StoreError> {
        self.conn
            .query(&redis::cmd("PING"))
            .await
            .map(drop)
            .map_err(store_error)
    }

    /// Completes one claim and claims the next key in the same round trip (a pipeline of
    /// both scripts; on a cluster, two concurrent calls when the keys are on different
    /// slots). For a consumer that handles messages one after another, this halves the round
    /// trips. The outer error means nothing is known of either.
    pub async fn complete_and_claim(
        &self,
        done: &Completion<'_>,
        next: &ClaimRequest,
    ) -> Result<(Result<(), StoreError>, Claim), StoreError> {
        if let Err(e) = self.check_size(done.result) {
            return Ok((Err(e), self.claim(next).await?));
        }
        let complete = self.complete_cmd(std::iter::once(done));
        let claim = self.claim_cmd(std::iter::once(next));
        let (c, n) = if self.conn.is_cluster() {
            futures::try_join!(
                self.conn.eval(&scripts::COMPLETE, &complete),
                self.conn.eval(&scripts::CLAIM, &claim)
            )
            .map_err(store_error)?
        } else {
            self.pipelined(&complete, &claim)
                .await
                .map_err(store_error)?
        };
        let completed = match reply::flags(c, 1)?[0] {
            true => Ok(()),
            false => Err(StoreError::LeaseLost {
                key: done.key.clone(),
            }),
        };
        let claim = reply::claims(n, 1)?.pop().expect("one claim answer");
        Ok((completed, claim))
    }

    /// Sends the completion and the claim in one write; a script the server lost (restart)
    /// did not run, so it is loaded and sent again on its own.
    async fn pipelined(&self, complete: &Cmd, claim: &Cmd) -> redis::RedisResult<(Value, Value)> {
        let mut pipe = redis::pipe();
        pipe.add_command(complete.clone())
            .add_command(claim.clone());
        let answers = self.conn.pipeline(&pipe, 2).await?;
        let [c, n]: [Value; 2] = answers
            .try_into()
            .map_err(|_| crate::conn::unexpected("pipeline answer count"))?;
        let c = match c.extract_error() {
            Err(e) if is_noscript(&e) => self.conn.eval(&scripts::COMPLETE, complete).await?,
            other => other?,
        };
        let n = match n.extract_error() {
            Err(e) if is_noscript(&e) => self.conn.eval(&scripts::CLAIM, claim).await?,
            other => other?,
        };
        Ok((c, n))
    }

    fn check_size(&self, result: Option<&[u8]>) -> Result<(), StoreError> {
        match result {
            Some(r) if r.len() > self.max_result_bytes => Err(StoreError::ResultTooLarge {
                size: r.len(),
                max: self.max_result_bytes,
            }),
            _ => Ok(()),
        }
    }

    /// The cluster slot of a record (0 on a single node, where it does not matter).
    fn slot(&self, key: &RecordKey) -> u16 {
        if !self.conn.is_cluster() {
            return 0;
        }
        let mut name = Vec::with_capacity(64);
        self.layout.write_key(key, &mut name);
        slot_of(&name)
    }

    /// One call of the claim script for `reqs`, which share a slot, a lease and a retention
    /// (those of the first are sent once for all). The fingerprints go as one argument, in
    /// the record's form: a length byte (32 or 0) and 32 bytes.
    fn claim_cmd<'a>(&self, reqs: impl ExactSizeIterator<Item = &'a ClaimRequest> + Clone) -> Cmd {
        let n = reqs.len();
        let mut cmd = Cmd::with_capacity(6 + n, 96 + n * (self.layout.prefix.len() + 80));
        cmd.arg("EVALSHA").arg(scripts::CLAIM.get_hash()).arg(n);
        for r in reqs.clone() {
            self.layout
                .write_key(&r.key, &mut cmd.writer_for_next_arg());
        }
        let (lease, retention) = reqs
            .clone()
            .next()
            .map_or((0, 0), |r| (ms(r.lease), ms(r.retention)));
        cmd.arg(lease).arg(retention);
        let mut fps = cmd.writer_for_next_arg();
        for r in reqs {
            // Writing to memory cannot fail.
            let _ = match &r.fingerprint {
                Some(fp) => fps.write_all(&[32]).and_then(|_| fps.write_all(&fp.0)),
                None => fps.write_all(&[0; 33]),
            };
        }
        drop(fps);
        cmd
    }

    /// One call of the completion script for `items`, which share a slot and a retention.
    /// The tokens go as one argument, 8 bytes each; results, when any, one argument each.
    fn complete_cmd<'a, 'b: 'a>(
        &self,
        items: impl ExactSizeIterator<Item = &'a Completion<'b>> + Clone,
    ) -> Cmd {
        let n = items.len();
        let with_results = items.clone().any(|c| c.result.is_some());
        let mut cmd = Cmd::with_capacity(
            6 + if with_results { n } else { 0 },
            96 + n * (self.layout.prefix.len() + 64),
        );
        cmd.arg("EVALSHA").arg(scripts::COMPLETE.get_hash()).arg(n);
        for c in items.clone() {
            self.layout.write_key(c.key, &mut cmd.writer_for_next_arg());
        }
        cmd.arg(items.clone().next().map_or(0, |c| ms(c.retention)));
        let mut tokens = cmd.writer_for_next_arg();
        for c in items.clone() {
            let _ = tokens.write_all(&c.token.0.to_be_bytes());
        }
        drop(tokens);
        if with_results {
            let mut mask = cmd.writer_for_next_arg();
            for c in items.clone() {
                let _ = mask.write_all(if c.result.is_some() { b"1" } else { b"0" });
            }
            drop(mask);
            for c in items {
                cmd.arg(c.result.unwrap_or_default());
            }
        } else {
            cmd.arg(&b""[..]);
        }
        cmd
    }

    async fn eval_one(&self, script: &redis::Script, cmd: &Cmd) -> Result<Value, StoreError> {
        self.conn.eval(script, cmd).await.map_err(store_error)
    }

    /// Starts a SCAN over the scope's keys, on every node holding them.
    async fn scan(&self, scope: &Scope) -> Result<Scan, StoreError> {
        let nodes = self
            .conn
            .scan_nodes(self.layout.scope_slot_key(scope))
            .await
            .map_err(store_error)?;
        Ok(Scan {
            pattern: self.layout.pattern(scope),
            nodes,
            node: 0,
            cursor: 0,
        })
    }

    /// The next page of a SCAN (possibly empty), or `None` when every node is done.
    async fn next_page(&self, scan: &mut Scan) -> Result<Option<Vec<Vec<u8>>>, StoreError> {
        let Some(node) = scan.nodes.get(scan.node) else {
            return Ok(None);
        };
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(scan.cursor)
            .arg("MATCH")
            .arg(&scan.pattern)
            .arg("COUNT")
            .arg(SCAN_COUNT);
        let v = self.conn.query_node(node, cmd).await.map_err(store_error)?;
        let mut parts = as_array(v).map_err(store_error)?.into_iter();
        let (Some(next), Some(keys)) = (parts.next(), parts.next()) else {
            return Err(StoreError::Corrupt("SCAN answer".into()));
        };
        scan.cursor = reply::integer(&next)? as u64;
        if scan.cursor == 0 {
            scan.node += 1;
        }
        Ok(Some(
            as_array(keys)
                .map_err(store_error)?
                .into_iter()
                .filter_map(|k| match k {
                    Value::BulkString(b) => Some(b),
                    _ => None,
                })
                .collect(),
        ))
    }

    /// Runs `cmd_for(group)` for each slot group of `keys` (a script, or a plain command when
    /// `script` is `None`), concurrently, and returns each group's indices into `keys` with
    /// its raw answer.
    async fn per_slot_raw(
        &self,
        keys: &[Vec<u8>],
        script: Option<&redis::Script>,
        cmd_for: impl Fn(&[usize]) -> Cmd,
    ) -> Result<Vec<(Vec<usize>, Value)>, StoreError> {
        let cluster = self.conn.is_cluster();
        let groups = group_by(
            keys.iter()
                .enumerate()
                .map(|(i, k)| (i, if cluster { slot_of(k) } else { 0 }, ())),
        );
        let cmds = groups
            .iter()
            .map(|(slot, idx)| (*slot, cmd_for(idx)))
            .collect();
        let answers = self
            .conn
            .run_many(script, cmds)
            .await
            .map_err(store_error)?;
        Ok(groups
            .into_iter()
            .map(|(_, idx)| idx)
            .zip(answers)
            .collect())
    }
}

/// Splits items, given as (index, slot, class), into groups one script call may take, each
/// with its slot: one slot and one class (what the call sends once for all its keys) per
/// group, at most [`MAX_KEYS_PER_CALL`] items a group, in the order first seen.
fn group_by<C: Copy + Eq + Hash>(
    items: impl Iterator<Item = (usize, u16, C)>,
) -> Vec<(u16, Vec<usize>)> {
    group_in_order(items.map(|(i, slot, class)| (i, slot, class, None::<()>)))
}

/// [`group_by`], where an item naming a record that an earlier item named goes in a group no
/// earlier than that item's. The groups of a slot run in order (one pipeline per node), so
/// the transitions of one record then run in batch order even when their classes differ.
fn group_in_order<C: Copy + Eq + Hash, K: Eq + Hash>(
    items: impl Iterator<Item = (usize, u16, C, Option<K>)>,
) -> Vec<(u16, Vec<usize>)> {
    let mut groups: Vec<(u16, Vec<usize>)> = Vec::new();
    // The open group of each (slot, class); most batches have one, so check the last first.
    let mut open: HashMap<(u16, C), usize> = HashMap::new();
    let mut last: Option<((u16, C), usize)> = None;
    // The group of each record's latest item.
    let mut latest: HashMap<K, usize> = HashMap::new();
    for (i, slot, class, record) in items {
        let at = match last {
            Some((k, g)) if k == (slot, class) => Some(g),
            _ => open.get(&(slot, class)).copied(),
        };
        let floor = record
            .as_ref()
            .and_then(|r| latest.get(r))
            .copied()
            .unwrap_or(0);
        let g = match at {
            Some(g) if g >= floor && groups[g].1.len() < MAX_KEYS_PER_CALL => g,
            _ => {
                groups.push((slot, Vec::new()));
                open.insert((slot, class), groups.len() - 1);
                groups.len() - 1
            }
        };
        groups[g].1.push(i);
        last = Some(((slot, class), g));
        if let Some(r) = record {
            latest.insert(r, g);
        }
    }
    groups
}

fn is_noscript(e: &redis::RedisError) -> bool {
    e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
}

#[async_trait]
impl Store for RedisStore {
    async fn claim(&self, req: &ClaimRequest) -> Result<Claim, StoreError> {
        let v = self
            .eval_one(&scripts::CLAIM, &self.claim_cmd(std::iter::once(req)))
            .await?;
        Ok(reply::claims(v, 1)?.pop().expect("one claim answer"))
    }

    async fn claim_batch(&self, reqs: &[ClaimRequest]) -> Result<Vec<Claim>, StoreError> {
        let groups = group_by(
            reqs.iter()
                .enumerate()
                .map(|(i, r)| (i, self.slot(&r.key), (ms(r.lease), ms(r.retention)))),
        );
        let cmds = groups
            .iter()
            .map(|(slot, idx)| (*slot, self.claim_cmd(idx.iter().map(|&i| &reqs[i]))))
            .collect();
        let answers = self
            .conn
            .run_many(Some(&scripts::CLAIM), cmds)
            .await
            .map_err(store_error)?;
        let mut out: Vec<Option<Claim>> = vec![None; reqs.len()];
        for ((_, idx), answer) in groups.iter().zip(answers) {
            for (&i, c) in idx.iter().zip(reply::claims(answer, idx.len())?) {
                out[i] = Some(c);
            }
        }
        Ok(out
            .into_iter()
            .map(|c| c.expect("every key answered"))
            .collect())
    }

    async fn complete(
        &self,
        key: &RecordKey,
        token: FencingToken,
        result: Option<&[u8]>,
        retention: Duration,
    ) -> Result<(), StoreError> {
        self.check_size(result)?;
        let c = Completion {
            key,
            token,
            result,
            retention,
        };
        let v = self
            .eval_one(&scripts::COMPLETE, &self.complete_cmd(std::iter::once(&c)))
            .await?;
        match reply::flags(v, 1)?[0] {
            true => Ok(()),
            false => Err(StoreError::LeaseLost { key: key.clone() }),
        }
    }

    async fn complete_batch(
        &self,
        items: &[Completion<'_>],
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        let mut out: Vec<Result<(), StoreError>> = Vec::with_capacity(items.len());
        let mut todo = Vec::with_capacity(items.len());
        for (i, c) in items.iter().enumerate() {
            let checked = self.check_size(c.result);
            if checked.is_ok() {
                todo.push((i, self.slot(c.key), ms(c.retention)));
            }
            out.push(checked);
        }
        // One script call per slot and retention. With one retention a record's completions
        // share a call, in order; with several, a record named twice must keep its order
        // across calls, which costs a map of the records, so only then.
        let mixed = todo.windows(2).any(|w| w[0].2 != w[1].2);
        let groups = group_in_order(
            todo.into_iter()
                .map(|(i, slot, retention)| (i, slot, retention, mixed.then(|| items[i].key))),
        );
        let cmds = groups
            .iter()
            .map(|(slot, idx)| (*slot, self.complete_cmd(idx.iter().map(|&i| &items[i]))))
            .collect();
        let answers = self
            .conn
            .run_many(Some(&scripts::COMPLETE), cmds)
            .await
            .map_err(store_error)?;
        for ((_, idx), answer) in groups.iter().zip(answers) {
            for (&i, ok) in idx.iter().zip(reply::flags(answer, idx.len())?) {
                if !ok {
                    out[i] = Err(StoreError::LeaseLost {
                        key: items[i].key.clone(),
                    });
                }
            }
        }
        Ok(out)
    }

    async fn release(&self, key: &RecordKey, token: FencingToken) -> Result<(), StoreError> {
        let mut cmd = scripts::evalsha(&scripts::RELEASE, 1);
        cmd.arg(self.layout.key(key)).arg(token.0);
        match reply::integer(&self.eval_one(&scripts::RELEASE, &cmd).await?)? {
            1 => Ok(()),
            _ => Err(StoreError::LeaseLost { key: key.clone() }),
        }
    }

    async fn extend(
        &self,
        key: &RecordKey,
        token: FencingToken,
        lease: Duration,
    ) -> Result<UnixMillis, StoreError> {
        let mut cmd = scripts::evalsha(&scripts::EXTEND, 1);
        cmd.arg(self.layout.key(key)).arg(token.0).arg(ms(lease));
        match reply::integer(&self.eval_one(&scripts::EXTEND, &cmd).await?)? {
            until if until >= 0 => Ok(until),
            _ => Err(StoreError::LeaseLost { key: key.clone() }),
        }
    }

    async fn get(&self, key: &RecordKey) -> Result<Option<Record>, StoreError> {
        let mut cmd = scripts::evalsha(&scripts::GET, 1);
        cmd.arg(self.layout.key(key));
        let answer = self.eval_one(&scripts::GET, &cmd).await?;
        Ok(reply::records(answer, 1)?.pop().flatten())
    }

    async fn get_batch(&self, keys: &[RecordKey]) -> Result<Vec<Option<Record>>, StoreError> {
        let names: Vec<Vec<u8>> = keys.iter().map(|k| self.layout.key(k).into()).collect();
        let answers = self
            .per_slot_raw(&names, Some(&scripts::GET), |idx| {
                let mut cmd = scripts::evalsha(&scripts::GET, idx.len());
                for &i in idx {
                    cmd.arg(&names[i][..]);
                }
                cmd
            })
            .await?;
        let mut out: Vec<Option<Record>> = vec![None; keys.len()];
        for (idx, answer) in answers {
            for (&i, r) in idx.iter().zip(reply::records(answer, idx.len())?) {
                out[i] = r;
            }
        }
        Ok(out)
    }

    async fn purge(&self, scope: &Scope) -> Result<u64, StoreError> {
        let mut scan = self.scan(scope).await?;
        let mut deleted = 0u64;
        while let Some(keys) = self.next_page(&mut scan).await? {
            if keys.is_empty() {
                continue;
            }
            let answers = self
                .per_slot_raw(&keys, None, |idx| {
                    let mut cmd = redis::cmd("UNLINK");
                    for &i in idx {
                        cmd.arg(&keys[i][..]);
                    }
                    cmd
                })
                .await?;
            for (_, a) in &answers {
                deleted += reply::integer(a)? as u64;
            }
        }
        Ok(deleted)
    }

    async fn stats(&self, scope: &Scope) -> Result<ScopeStats, StoreError> {
        // SCAN may return a key twice; count each once.
        let mut scan = self.scan(scope).await?;
        let mut seen: HashSet<Vec<u8>> = HashSet::new();
        while let Some(keys) = self.next_page(&mut scan).await? {
            seen.extend(keys);
        }
        let keys: Vec<Vec<u8>> = seen.into_iter().collect();
        let mut stats = ScopeStats::default();
        for chunk in keys.chunks(MAX_KEYS_PER_CALL * 10) {
            let answers = self
                .per_slot_raw(chunk, Some(&scripts::STATS), |idx| {
                    let mut cmd = scripts::evalsha(&scripts::STATS, idx.len());
                    for &i in idx {
                        cmd.arg(&chunk[i][..]);
                    }
                    cmd
                })
                .await?;
            for (_, a) in answers {
                let (consuming, consumed) = reply::counts(a)?;
                stats.consuming += consuming;
                stats.consumed += consumed;
            }
        }
        Ok(stats)
    }
}

/// A SCAN in progress over the nodes holding a scope.
struct Scan {
    pattern: String,
    nodes: Vec<Node>,
    node: usize,
    cursor: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_named_again_under_another_class_runs_after_its_first_group() {
        // (index, slot, class, record): record 7 first in class 30, then again in class 60,
        // whose group was opened before.
        let items = [
            (0, 1, 60, Some(1)),
            (1, 1, 30, Some(7)),
            (2, 1, 60, Some(2)),
            (3, 1, 60, Some(7)),
            (4, 1, 60, Some(3)),
            (5, 2, 60, Some(7)),
        ];
        let groups = group_in_order(items.into_iter());
        assert_eq!(
            groups,
            vec![(1, vec![0, 2]), (1, vec![1]), (1, vec![3, 4]), (2, vec![5]),]
        );
        // Without records to follow, one group per slot and class.
        let plain = group_by(items.into_iter().map(|(i, s, c, _)| (i, s, c)));
        assert_eq!(
            plain,
            vec![(1, vec![0, 2, 3, 4]), (1, vec![1]), (2, vec![5])]
        );
    }
}
