//! The statements, built once from the validated table name.

use idemq_sql::{RawRecord, TableName};

/// The database's clock as Unix milliseconds, independent of the session time zone and
/// constant within one statement.
const NOW: &str = "(TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', UTC_TIMESTAMP(6)) DIV 1000)";

/// One new record's values, as `transition::claim(None, ..)` writes them:
/// scope, key, lease ms, keep ms, fingerprint.
const NEW_ROW: &str = "(?, ?, 'CONSUMING', 1, NOW + ?, NOW + ?, ?, NULL, 1, NOW, NOW)";

/// One full row: scope, key and the record's columns.
const FULL_ROW: &str = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

#[derive(Debug)]
pub(crate) struct Sql {
    table: String,
    pub complete: String,
    pub consumed_by: String,
    pub release: String,
    pub extend: String,
    pub read_lease: String,
    pub mark_consumed: String,
    pub get: String,
    pub purge: String,
    pub stats: String,
    pub sweep: String,
}

impl Sql {
    pub fn new(t: &TableName) -> Self {
        let cols = RawRecord::COLUMNS;
        let key = "scope = ? AND idem_key = ?";
        Self {
            table: t.to_string(),
            complete: format!(
                "UPDATE {t} SET result = ?, expires_at = {NOW} + ?, updated_at = {NOW}, \
                   state = 'CONSUMED' \
                 WHERE {key} AND token = ? AND state = 'CONSUMING' AND expires_at > {NOW}"
            ),
            // A completion retried by its owner finds the row consumed with its token.
            consumed_by: format!(
                "SELECT 1 FROM {t} \
                 WHERE {key} AND token = ? AND state = 'CONSUMED' AND expires_at > {NOW}"
            ),
            release: format!(
                "UPDATE {t} SET lease_until = 0, updated_at = {NOW} \
                 WHERE {key} AND token = ? AND state = 'CONSUMING' AND expires_at > {NOW}"
            ),
            extend: format!(
                "UPDATE {t} SET lease_until = {NOW} + ?, \
                   expires_at = GREATEST(expires_at, {NOW} + ?), updated_at = {NOW} \
                 WHERE {key} AND token = ? AND state = 'CONSUMING' AND expires_at > {NOW}"
            ),
            read_lease: format!("SELECT lease_until FROM {t} WHERE {key} AND token = ?"),
            // Inside `run_in_tx` the row is locked by this transaction: no expiry check.
            mark_consumed: format!(
                "UPDATE {t} SET result = ?, expires_at = {NOW} + ?, updated_at = {NOW}, \
                   state = 'CONSUMED' \
                 WHERE {key} AND token = ?"
            ),
            get: format!("SELECT {cols} FROM {t} WHERE {key} AND expires_at > {NOW}"),
            purge: format!("DELETE FROM {t} WHERE scope = ?"),
            stats: format!(
                "SELECT state, COUNT(*) FROM {t} WHERE scope = ? AND expires_at > {NOW} \
                 GROUP BY state"
            ),
            // Small batches in index order: each statement locks few rows, briefly.
            sweep: format!("DELETE FROM {t} WHERE expires_at <= {NOW} ORDER BY expires_at LIMIT ?"),
        }
    }

    /// Inserts `n` new records, skipping keys that exist.
    pub fn insert_new(&self, n: usize) -> String {
        let rows = vec![NEW_ROW.replace("NOW", NOW); n].join(", ");
        format!(
            "INSERT IGNORE INTO {} (scope, idem_key, {}) VALUES {rows}",
            self.table,
            RawRecord::COLUMNS
        )
    }

    /// Reads `n` keys, with the database's clock; `FOR UPDATE` locks them in key order.
    pub fn read_rows(&self, n: usize, for_update: bool) -> String {
        let which = vec!["(scope = ? AND idem_key = ?)"; n].join(" OR ");
        let lock = if for_update { " FOR UPDATE" } else { "" };
        format!(
            "SELECT scope, idem_key, {}, {NOW} AS now_ms FROM {} WHERE {which} \
             ORDER BY scope, idem_key{lock}",
            RawRecord::COLUMNS,
            self.table
        )
    }

    /// Writes `n` full rows over existing ones (locked by the caller).
    pub fn write_rows(&self, n: usize) -> String {
        let rows = vec![FULL_ROW; n].join(", ");
        format!(
            "INSERT INTO {} (scope, idem_key, {}) VALUES {rows} \
             ON DUPLICATE KEY UPDATE state = VALUES(state), token = VALUES(token), \
               lease_until = VALUES(lease_until), expires_at = VALUES(expires_at), \
               fingerprint = VALUES(fingerprint), result = VALUES(result), \
               attempts = VALUES(attempts), created_at = VALUES(created_at), \
               updated_at = VALUES(updated_at)",
            self.table,
            RawRecord::COLUMNS
        )
    }
}
