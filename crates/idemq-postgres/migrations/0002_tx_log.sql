CREATE TABLE IF NOT EXISTS {table} (
    tx_id        VARCHAR(128) NOT NULL PRIMARY KEY,
    business_key VARCHAR(255),
    topic        VARCHAR(255) NOT NULL,
    state        VARCHAR(16)  NOT NULL CHECK (state IN ('COMMITTED', 'ROLLED_BACK')),
    created_at   BIGINT       NOT NULL
);
CREATE INDEX IF NOT EXISTS {table}_created ON {table} (created_at);
