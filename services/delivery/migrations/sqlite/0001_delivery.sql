CREATE TABLE partners (
    id               TEXT    NOT NULL PRIMARY KEY,
    account_id       TEXT    NOT NULL UNIQUE,
    name             TEXT    NOT NULL,
    email            TEXT    NOT NULL,
    phone            TEXT    NOT NULL,
    on_shift         INTEGER NOT NULL,
    postal_prefixes  TEXT    NOT NULL,
    circle_lat       REAL    NULL,
    circle_lon       REAL    NULL,
    radius_km        REAL    NULL,
    max_concurrent   INTEGER NOT NULL,
    max_items        INTEGER NOT NULL,
    max_weight_grams INTEGER NULL,
    current_load     INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);

CREATE TABLE deliveries (
    order_id     TEXT    NOT NULL PRIMARY KEY,
    user_id      TEXT    NOT NULL,
    status       TEXT    NOT NULL,
    partner_id   TEXT    NULL,
    postal_code  TEXT    NOT NULL,
    lat          REAL    NULL,
    lon          REAL    NULL,
    item_count   INTEGER NOT NULL,
    weight_grams INTEGER NOT NULL,
    address      TEXT    NOT NULL,
    reason       TEXT    NULL,
    assigned_at  INTEGER NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
CREATE INDEX deliveries_partner ON deliveries (partner_id, created_at);
CREATE INDEX deliveries_status ON deliveries (status, created_at);

CREATE TABLE outbox (
    seq        INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    event_id   TEXT    NOT NULL,
    topic      TEXT    NOT NULL,
    event_key  TEXT    NOT NULL,
    event_type TEXT    NOT NULL,
    payload    TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    sent_at    INTEGER NULL
);
CREATE INDEX outbox_unsent ON outbox (sent_at, seq);

CREATE TABLE processed_events (
    event_id     TEXT    NOT NULL PRIMARY KEY,
    processed_at INTEGER NOT NULL
);
