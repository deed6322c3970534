//! Applying a migration file of the crate.

use idemq_core::StoreError;
use idemq_sql::{store_error, TableName};
use sqlx::SqlitePool;

/// Creates what `template` creates, with `{table}` replaced by `table`.
pub(crate) async fn apply(
    pool: &SqlitePool,
    template: &str,
    table: &TableName,
) -> Result<(), StoreError> {
    let ddl = template.replace("{table}", table.as_str());
    sqlx::raw_sql(&ddl)
        .execute(pool)
        .await
        .map_err(store_error)?;
    Ok(())
}
