//! The statements, built once from the validated table name.

use idemq_sql::{RawRecord, TableName};

/// The database's clock as Unix milliseconds; constant within one statement.
const NOW: &str = "(extract(epoch from statement_timestamp()) * 1000)::int8";

#[derive(Debug)]
pub(crate) struct Sql {
    pub insert_new: String,
    pub insert_or_read: String,
    pub lock_rows: String,
    pub update_rows: String,
    pub complete: String,
    pub complete_batch: String,
    pub consumed_by: String,
    pub release: String,
    pub extend: String,
    pub mark_consumed: String,
    pub get: String,
    pub purge: String,
    pub stats: String,
    pub sweep: String,
}

impl Sql {
    pub fn new(t: &TableName) -> Self {
        let cols = RawRecord::COLUMNS;
        let key = "scope = $1 AND idem_key = $2";
        Self {
            // New keys, as `transition::claim(None, ..)` writes them; sorted so that
            // concurrent batches take the unique-index locks in one order.
            insert_new: format!(
                "INSERT INTO {t} (scope, idem_key, {cols}) \
                 SELECT u.scope, u.idem_key, 'CONSUMING', 1, n.ms + u.lease, n.ms + u.keep, \
                        u.fp, NULL, 1, n.ms, n.ms \
                 FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::int8[], $5::bytea[]) \
                      AS u(scope, idem_key, lease, keep, fp), \
                      (SELECT {NOW} AS ms) AS n \
                 ORDER BY u.scope, u.idem_key \
                 ON CONFLICT (scope, idem_key) DO NOTHING \
                 RETURNING scope, idem_key"
            ),
            // One round trip for most claims: inserts the new keys and reads the others
            // (without locking them) from the statement's snapshot.
            insert_or_read: format!(
                "WITH u AS ( \
                   SELECT * FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::int8[], \
                                        $5::bytea[]) \
                   WITH ORDINALITY AS u(scope, idem_key, lease, keep, fp, ord)), \
                 n AS (SELECT {NOW} AS ms), \
                 ins AS ( \
                   INSERT INTO {t} (scope, idem_key, {cols}) \
                   SELECT u.scope, u.idem_key, 'CONSUMING', 1, n.ms + u.lease, n.ms + u.keep, \
                          u.fp, NULL, 1, n.ms, n.ms \
                   FROM u, n ORDER BY u.scope, u.idem_key \
                   ON CONFLICT (scope, idem_key) DO NOTHING \
                   RETURNING scope, idem_key) \
                 SELECT EXISTS (SELECT 1 FROM ins \
                                WHERE ins.scope = u.scope AND ins.idem_key = u.idem_key) \
                          AS inserted, \
                        t.state, t.token, t.lease_until, t.expires_at, t.fingerprint, t.result, \
                        t.attempts, t.created_at, t.updated_at, n.ms AS now_ms \
                 FROM u CROSS JOIN n \
                 LEFT JOIN {t} AS t ON t.scope = u.scope AND t.idem_key = u.idem_key \
                 ORDER BY u.ord"
            ),
            lock_rows: format!(
                "SELECT t.scope AS row_scope, t.idem_key AS row_key, t.state, t.token, \
                        t.lease_until, t.expires_at, t.fingerprint, t.result, t.attempts, \
                        t.created_at, t.updated_at, {NOW} AS now_ms \
                 FROM {t} AS t \
                 JOIN UNNEST($1::text[], $2::text[]) AS u(scope, idem_key) \
                   ON t.scope = u.scope AND t.idem_key = u.idem_key \
                 ORDER BY t.scope, t.idem_key \
                 FOR UPDATE OF t"
            ),
            update_rows: format!(
                "UPDATE {t} AS t SET state = u.state, token = u.token, \
                   lease_until = u.lease_until, expires_at = u.expires_at, \
                   fingerprint = u.fingerprint, result = u.result, attempts = u.attempts, \
                   created_at = u.created_at, updated_at = u.updated_at \
                 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[], $5::int8[], \
                             $6::int8[], $7::bytea[], $8::bytea[], $9::int8[], $10::int8[], \
                             $11::int8[]) \
                      AS u(scope, idem_key, state, token, lease_until, expires_at, \
                           fingerprint, result, attempts, created_at, updated_at) \
                 WHERE t.scope = u.scope AND t.idem_key = u.idem_key"
            ),
            complete: format!(
                "UPDATE {t} SET state = 'CONSUMED', result = $4, expires_at = {NOW} + $5, \
                   updated_at = {NOW} \
                 WHERE {key} AND token = $3 AND state = 'CONSUMING' AND expires_at > {NOW}"
            ),
            // The rows are locked (`l`, in key order, their latest versions) before anything is
            // decided. The first completion of a key whose token owns the consuming record
            // completes it (`w`, `d`); the key's later ones with that token are then retries,
            // accepted while the record lives. A key nothing completed answers from its locked
            // row, as `complete` then `consumed_by` would. One `ok` per completion, in order.
            complete_batch: format!(
                "WITH u AS ( \
                   SELECT * FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::bytea[], \
                                        $5::int8[]) \
                   WITH ORDINALITY AS u(scope, idem_key, token, result, keep, ord)), \
                 n AS (SELECT {NOW} AS ms), \
                 l AS ( \
                   SELECT t.scope, t.idem_key, t.token, t.state, t.expires_at FROM {t} AS t \
                   JOIN (SELECT DISTINCT scope, idem_key FROM u) AS k \
                     ON t.scope = k.scope AND t.idem_key = k.idem_key \
                   ORDER BY t.scope, t.idem_key \
                   FOR UPDATE OF t), \
                 w AS ( \
                   SELECT DISTINCT ON (u.scope, u.idem_key) u.scope, u.idem_key, u.result, \
                          u.keep, u.ord \
                   FROM u CROSS JOIN n \
                   JOIN l ON l.scope = u.scope AND l.idem_key = u.idem_key \
                     AND l.token = u.token \
                   WHERE l.state = 'CONSUMING' AND l.expires_at > n.ms \
                   ORDER BY u.scope, u.idem_key, u.ord), \
                 d AS ( \
                   UPDATE {t} AS t SET state = 'CONSUMED', result = w.result, \
                     expires_at = n.ms + w.keep, updated_at = n.ms \
                   FROM w CROSS JOIN n \
                   WHERE t.scope = w.scope AND t.idem_key = w.idem_key \
                   RETURNING t.scope, t.idem_key, t.token, t.expires_at, w.ord) \
                 SELECT CASE WHEN d.ord IS NOT NULL \
                          THEN u.token = d.token AND (u.ord = d.ord OR d.expires_at > n.ms) \
                          ELSE COALESCE(l.token = u.token AND l.state = 'CONSUMED' \
                                        AND l.expires_at > n.ms, false) \
                        END AS ok \
                 FROM u CROSS JOIN n \
                 LEFT JOIN d ON d.scope = u.scope AND d.idem_key = u.idem_key \
                 LEFT JOIN l ON l.scope = u.scope AND l.idem_key = u.idem_key \
                 ORDER BY u.ord"
            ),
            // A completion retried by its owner finds the row consumed with its token.
            consumed_by: format!(
                "SELECT 1 FROM {t} \
                 WHERE {key} AND token = $3 AND state = 'CONSUMED' AND expires_at > {NOW}"
            ),
            release: format!(
                "UPDATE {t} SET lease_until = 0, updated_at = {NOW} \
                 WHERE {key} AND token = $3 AND state = 'CONSUMING' AND expires_at > {NOW}"
            ),
            extend: format!(
                "UPDATE {t} SET lease_until = {NOW} + $4, \
                   expires_at = GREATEST(expires_at, {NOW} + $4), updated_at = {NOW} \
                 WHERE {key} AND token = $3 AND state = 'CONSUMING' AND expires_at > {NOW} \
                 RETURNING lease_until"
            ),
            // Inside `run_in_tx` the row is locked by this transaction: no expiry check.
            mark_consumed: format!(
                "UPDATE {t} SET state = 'CONSUMED', result = $4, expires_at = {NOW} + $5, \
                   updated_at = {NOW} \
                 WHERE {key} AND token = $3"
            ),
            get: format!("SELECT {cols} FROM {t} WHERE {key} AND expires_at > {NOW}"),
            purge: format!("DELETE FROM {t} WHERE scope = $1"),
            stats: format!(
                "SELECT state, COUNT(*) FROM {t} WHERE scope = $1 AND expires_at > {NOW} \
                 GROUP BY state"
            ),
            // Small batches by ctid; rows locked by a running transaction are skipped.
            sweep: format!(
                "DELETE FROM {t} WHERE ctid = ANY(ARRAY( \
                   SELECT ctid FROM {t} WHERE expires_at <= {NOW} \
                   LIMIT $1 FOR UPDATE SKIP LOCKED))"
            ),
        }
    }
}
