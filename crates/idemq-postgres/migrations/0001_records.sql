CREATE TABLE IF NOT EXISTS {table} (
    scope       TEXT   NOT NULL,
    idem_key    TEXT   NOT NULL,
    state       TEXT   NOT NULL CHECK (state IN ('CONSUMING', 'CONSUMED')),
    token       BIGINT NOT NULL,
    lease_until BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    fingerprint BYTEA,
    result      BYTEA,
    attempts    BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (scope, idem_key)
);
CREATE INDEX IF NOT EXISTS {table}_expires ON {table} (expires_at);
