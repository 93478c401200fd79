-- The catalog and its transactional outbox.
CREATE TABLE IF NOT EXISTS products (
    id TEXT PRIMARY KEY NOT NULL,
    version INTEGER NOT NULL,
    doc TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    product_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    envelope TEXT NOT NULL
);
