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

/// An error inside a store's transaction: a driver error, which may be worth running the
/// transaction again for (see [`is_retryable`]), or a decided store error.
#[derive(Debug)]
pub enum TxError {
    /// The driver failed.
    Db(sqlx::Error),
    /// The store refused or found corrupt data.
    Store(StoreError),
}

impl TxError {
    /// True when the transaction was rolled back by a deadlock or busy database and may be
    /// run again.
    pub fn is_retryable(&self) -> bool {
        matches!(self, TxError::Db(e) if is_retryable(e))
    }
}

impl From<sqlx::Error> for TxError {
    fn from(e: sqlx::Error) -> Self {
        TxError::Db(e)
    }
}

impl From<StoreError> for TxError {
    fn from(e: StoreError) -> Self {
        TxError::Store(e)
    }
}

impl From<TxError> for StoreError {
    fn from(e: TxError) -> Self {
        match e {
            TxError::Db(e) => store_error(e),
            TxError::Store(e) => e,
        }
    }
}
