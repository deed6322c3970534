//! The Lua scripts: every transition of a record is one of these, run atomically by Redis.

use std::sync::LazyLock;

use redis::Script;

/// Claims many keys; see `lua/claim.lua`.
pub(crate) static CLAIM: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/claim.lua")));
/// Completes many keys; see `lua/complete.lua`.
pub(crate) static COMPLETE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/complete.lua")));
/// Releases one claim.
pub(crate) static RELEASE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/release.lua")));
/// Extends one lease.
pub(crate) static EXTEND: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/extend.lua")));
/// Reads live records.
pub(crate) static GET: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/get.lua")));
/// Counts live records by state.
pub(crate) static STATS: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/stats.lua")));

/// An `EVALSHA` of `script`, to which the caller adds keys and then arguments.
pub(crate) fn evalsha(script: &Script, keys: usize) -> redis::Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(script.get_hash()).arg(keys);
    cmd
}
