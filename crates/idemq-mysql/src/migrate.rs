//! Applying a migration file of the crate.

use idemq_core::StoreError;
use idemq_sql::{store_error, TableName};
use sqlx::MySqlPool;

/// Creates what `template` creates, with `{table}` replaced by `table`, under a named lock
/// (`CREATE ... IF NOT EXISTS` racing itself can fail): safe to run from many processes.
pub(crate) async fn apply(
    pool: &MySqlPool,
    template: &str,
    table: &TableName,
) -> Result<(), StoreError> {
    let ddl = template.replace("{table}", table.as_str());
    let mut conn = pool.acquire().await.map_err(store_error)?;
    sqlx::query("SELECT GET_LOCK('idemq_migrate', 30)")
        .execute(&mut *conn)
        .await
        .map_err(store_error)?;
    let created = sqlx::raw_sql(&ddl).execute(&mut *conn).await;
    let released = sqlx::query("SELECT RELEASE_LOCK('idemq_migrate')")
        .execute(&mut *conn)
        .await;
    created.map_err(store_error)?;
    released.map_err(store_error)?;
    Ok(())
}
