//! Applying a migration file of the crate.

use idemq_core::StoreError;
use idemq_sql::{store_error, TableName};
use sqlx::PgPool;

/// Serialises concurrent migrations: two `CREATE ... IF NOT EXISTS` racing each other can
/// fail on the catalog's unique keys. ("idemq_mg" in ASCII.)
const MIGRATION_LOCK: i64 = 0x6964_656d_715f_6d67;

/// Creates what `template` creates, with `{table}` replaced by `table`, under an advisory
/// lock: safe to run from many processes.
pub(crate) async fn apply(
    pool: &PgPool,
    template: &str,
    table: &TableName,
) -> Result<(), StoreError> {
    let ddl = template.replace("{table}", table.as_str());
    let mut tx = pool.begin().await.map_err(store_error)?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
    sqlx::raw_sql(&ddl)
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
    tx.commit().await.map_err(store_error)
}
