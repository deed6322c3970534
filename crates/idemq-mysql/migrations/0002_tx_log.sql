CREATE TABLE IF NOT EXISTS {table} (
    tx_id        VARBINARY(128) NOT NULL,
    business_key VARBINARY(255) NULL,
    topic        VARBINARY(255) NOT NULL,
    state        VARCHAR(16) CHARACTER SET ascii NOT NULL,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (tx_id),
    INDEX {table}_created (created_at),
    CONSTRAINT {table}_state CHECK (state IN ('COMMITTED', 'ROLLED_BACK'))
) ENGINE = InnoDB
