-- The newest cart version an order was placed from (0: none). An `OrderPlaced` event names
-- the version its order read; the cart takes that order out only when it is newer than this,
-- so a redelivered event, or one overtaken by a later order's, changes nothing.
ALTER TABLE carts ADD COLUMN ordered_through BIGINT NOT NULL DEFAULT 0;
