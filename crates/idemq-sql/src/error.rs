use idemq_core::StoreError;

/// Maps a driver error: data that cannot be decoded is [`StoreError::Corrupt`], anything else
/// (no connection, a closed pool, a timeout, a server error) is [`StoreError::Unavailable`].
pub fn store_error(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => {
            StoreError::Corrupt(e.to_string())
        }
        other => StoreError::unavailable(other),
    }
}

/// True for the errors after which the whole transaction may simply be run again: a
/// deadlock or serialization failure (SQLSTATE `40001`, `40P01`; MySQL reports its deadlock
/// as `40001`) and SQLite's busy and locked codes. The failed transaction was rolled back.
pub fn is_retryable(e: &sqlx::Error) -> bool {
    let Some(db) = e.as_database_error() else {
        return false;
    };
    matches!(
        db.code().as_deref(),
        // SQLSTATEs, then SQLite's SQLITE_BUSY, SQLITE_LOCKED and SQLITE_BUSY_SNAPSHOT.
        Some("40001" | "40P01" | "5" | "6" | "517")
    )
}
