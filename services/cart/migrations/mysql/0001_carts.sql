-- One cart per user (the JWT subject). `version` grows by one with every saved change.
CREATE TABLE carts (
    user_id    VARCHAR(255) NOT NULL PRIMARY KEY,
    version    BIGINT       NOT NULL,
    updated_at BIGINT       NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- The lines of a cart, in the order they were added, with the price captured then.
CREATE TABLE cart_lines (
    user_id          VARCHAR(255) NOT NULL,
    product_id       VARCHAR(64)  NOT NULL,
    line_no          INT          NOT NULL,
    sku              VARCHAR(64)  NOT NULL,
    title            VARCHAR(400) NOT NULL,
    unit_price_minor BIGINT       NOT NULL,
    currency         CHAR(3)      NOT NULL,
    quantity         INT          NOT NULL,
    PRIMARY KEY (user_id, product_id),
    CONSTRAINT cart_lines_cart FOREIGN KEY (user_id) REFERENCES carts (user_id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
