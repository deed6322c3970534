CREATE TABLE IF NOT EXISTS {table} (
    tx_id        TEXT    NOT NULL PRIMARY KEY,
    business_key TEXT,
    topic        TEXT    NOT NULL,
    state        TEXT    NOT NULL CHECK (state IN ('COMMITTED', 'ROLLED_BACK')),
    created_at   INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS {table}_created ON {table} (created_at);
