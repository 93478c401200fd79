-- One cart per user (the JWT subject). `version` grows by one with every saved change.
CREATE TABLE carts (
    user_id    TEXT    NOT NULL PRIMARY KEY,
    version    INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

-- The lines of a cart, in the order they were added, with the price captured then.
CREATE TABLE cart_lines (
    user_id          TEXT    NOT NULL REFERENCES carts (user_id) ON DELETE CASCADE,
    product_id       TEXT    NOT NULL,
    line_no          INTEGER NOT NULL,
    sku              TEXT    NOT NULL,
    title            TEXT    NOT NULL,
    unit_price_minor INTEGER NOT NULL,
    currency         TEXT    NOT NULL,
    quantity         INTEGER NOT NULL,
    PRIMARY KEY (user_id, product_id)
);
