//! The SQLite store against the shared conformance suite, on a temporary file.

use idemq_sqlite::SqliteStore;

/// A store on a fresh file in a temporary directory that lives as long as the process.
async fn store() -> SqliteStore {
    let dir = tempfile::tempdir().expect("a temporary directory").keep();
    let url = format!("sqlite://{}", dir.join("idemq.db").display());
    SqliteStore::connect(&url)
        .await
        .expect("open the SQLite file")
}

/// A store whose pool is closed, as after a shutdown: every call must fail as unavailable.
async fn unreachable() -> SqliteStore {
    let store = store().await;
    store.pool().close().await;
    store
}

idemq_conformance::store_conformance! {
    store: store(),
    unreachable: unreachable(),
}
