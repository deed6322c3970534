CREATE TABLE IF NOT EXISTS {table} (
    scope       VARBINARY(128) NOT NULL,
    idem_key    VARBINARY(255) NOT NULL,
    state       VARCHAR(16) CHARACTER SET ascii NOT NULL,
    token       BIGINT NOT NULL,
    lease_until BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    fingerprint BINARY(32) NULL,
    result      LONGBLOB NULL,
    attempts    BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (scope, idem_key),
    INDEX {table}_expires (expires_at),
    CONSTRAINT {table}_state CHECK (state IN ('CONSUMING', 'CONSUMED'))
) ENGINE = InnoDB
