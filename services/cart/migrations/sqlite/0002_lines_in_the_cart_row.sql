-- A cart's lines move into its row, as a JSON array in the domain's serde form: a cart is
-- read and written whole, so a save becomes one statement. Existing lines are carried over
-- in their order; then their table goes.
ALTER TABLE carts ADD COLUMN lines_json TEXT NOT NULL DEFAULT '[]';

UPDATE carts
SET lines_json = (
    SELECT json_group_array(json(line))
    FROM (
        SELECT json_object(
            'product_id', l.product_id,
            'sku', l.sku,
            'title', l.title,
            'unit_price', json_object('minor', l.unit_price_minor, 'currency', l.currency),
            'quantity', l.quantity
        ) AS line
        FROM cart_lines l
        WHERE l.user_id = carts.user_id
        ORDER BY l.line_no
    )
)
WHERE EXISTS (SELECT 1 FROM cart_lines l WHERE l.user_id = carts.user_id);

DROP TABLE cart_lines;
