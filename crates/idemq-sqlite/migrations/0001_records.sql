CREATE TABLE IF NOT EXISTS {table} (
    scope       TEXT    NOT NULL,
    idem_key    TEXT    NOT NULL,
    state       TEXT    NOT NULL CHECK (state IN ('CONSUMING', 'CONSUMED')),
    token       INTEGER NOT NULL,
    lease_until INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    fingerprint BLOB,
    result      BLOB,
    attempts    INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (scope, idem_key)
);
CREATE INDEX IF NOT EXISTS {table}_expires ON {table} (expires_at);
