-- A SKU names one product: a unique column of its own, set by every write. Products stored
-- before it keep theirs in the document; the first product of each SKU gets the column, and
-- any later one sharing that SKU (possible before this migration) is left without it until a
-- write gives it a SKU of its own. Nothing is dropped.
ALTER TABLE products ADD COLUMN sku TEXT;
UPDATE products SET sku = json_extract(doc, '$.sku')
 WHERE id IN (SELECT MIN(id) FROM products GROUP BY json_extract(doc, '$.sku'));
CREATE UNIQUE INDEX IF NOT EXISTS products_sku ON products (sku);
