-- A cart's lines move into its row, as a JSON array in the domain's serde form: a cart is
-- read and written whole, so a save becomes one statement. Existing lines are carried over
-- in their order; then their table goes.
ALTER TABLE carts ADD COLUMN lines_json LONGTEXT NOT NULL DEFAULT '[]';

UPDATE carts c
SET c.lines_json = (
    SELECT JSON_ARRAYAGG(
        JSON_OBJECT(
            'product_id', l.product_id,
            'sku', l.sku,
            'title', l.title,
            'unit_price', JSON_OBJECT('minor', l.unit_price_minor, 'currency', l.currency),
            'quantity', l.quantity
        )
        ORDER BY l.line_no
    )
    FROM cart_lines l
    WHERE l.user_id = c.user_id
)
WHERE EXISTS (SELECT 1 FROM cart_lines l WHERE l.user_id = c.user_id);

DROP TABLE cart_lines;
