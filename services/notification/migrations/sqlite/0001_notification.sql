CREATE TABLE sent_log (
    event_id   TEXT    NOT NULL PRIMARY KEY,
    event_type TEXT    NOT NULL,
    template   TEXT    NOT NULL,
    order_id   TEXT    NOT NULL,
    recipient  TEXT    NOT NULL,
    subject    TEXT    NOT NULL,
    status     TEXT    NOT NULL,
    attempts   INTEGER NOT NULL,
    error      TEXT    NULL,
    at         INTEGER NOT NULL
);
CREATE INDEX sent_log_at ON sent_log (at);

CREATE TABLE known_orders (
    order_id   TEXT    NOT NULL PRIMARY KEY,
    snapshot   TEXT    NOT NULL,
    updated_at INTEGER NOT NULL
);

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
