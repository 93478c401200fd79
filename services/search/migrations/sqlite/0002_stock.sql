-- The stock the order service reports (StockChanged), one row per product, kept apart from
-- the product documents: a report can arrive before its product. `as_of` is the event time
-- in microseconds; only a newer report replaces a row.
CREATE TABLE IF NOT EXISTS stock (
    product_id TEXT PRIMARY KEY NOT NULL,
    available INTEGER NOT NULL,
    as_of INTEGER NOT NULL
);
