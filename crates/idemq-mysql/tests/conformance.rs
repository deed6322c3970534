//! The MySQL store against the shared conformance suite, on the local server.

use std::time::Duration;

use idemq_mysql::MySqlStore;
use sqlx::mysql::MySqlPoolOptions;

const URL: &str = "mysql://root@127.0.0.1:3306/test";

async fn store() -> MySqlStore {
    MySqlStore::connect(URL).await.unwrap_or_else(|e| {
        panic!("MariaDB or MySQL at 127.0.0.1:3306 (root, db test) is required: {e}")
    })
}

/// A store pointed at a port where nothing listens, failing fast.
async fn unreachable() -> MySqlStore {
    let pool = MySqlPoolOptions::new()
        .acquire_timeout(Duration::from_millis(500))
        .connect_lazy("mysql://root@127.0.0.1:1/test")
        .unwrap();
    MySqlStore::from_pool(pool, "idemq_records").unwrap()
}

idemq_conformance::store_conformance! {
    store: store(),
    unreachable: unreachable(),
}
