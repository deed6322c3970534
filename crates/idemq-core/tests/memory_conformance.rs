//! The in-memory store against the shared conformance suite.

use idemq_conformance::Unreachable;
use idemq_core::store::MemoryStore;

idemq_conformance::store_conformance! {
    store: async { MemoryStore::new() },
    unreachable: async { Unreachable },
}
