CREATE TABLE orders (
    id          TEXT    NOT NULL PRIMARY KEY,
    user_id     TEXT    NOT NULL,
    status      TEXT    NOT NULL,
    customer    TEXT    NOT NULL,
    shipping    TEXT    NOT NULL,
    partner     TEXT    NULL,
    item_count  INTEGER NOT NULL,
    total_minor INTEGER NOT NULL,
    currency    TEXT    NOT NULL,
    placed_at   INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX orders_user ON orders (user_id, id);

CREATE TABLE order_lines (
    order_id   TEXT    NOT NULL,
    line_no    INTEGER NOT NULL,
    product_id TEXT    NOT NULL,
    sku        TEXT    NOT NULL,
    title      TEXT    NOT NULL,
    quantity   INTEGER NOT NULL,
    unit_minor INTEGER NOT NULL,
    line_minor INTEGER NOT NULL,
    currency   TEXT    NOT NULL,
    PRIMARY KEY (order_id, line_no)
);

CREATE TABLE stock (
    product_id TEXT    NOT NULL PRIMARY KEY,
    available  INTEGER NOT NULL CHECK (available >= 0),
    updated_at INTEGER NOT NULL
);

CREATE TABLE idempotency_keys (
    user_id      TEXT    NOT NULL,
    idem_key     TEXT    NOT NULL,
    request_hash TEXT    NOT NULL,
    status       INTEGER NOT NULL,
    response     TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (user_id, idem_key)
);
