CREATE TABLE orders (
    id          CHAR(36)     CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
    user_id     VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    status      VARCHAR(20)  NOT NULL,
    customer    TEXT         NOT NULL,
    shipping    TEXT         NOT NULL,
    partner     TEXT         NULL,
    item_count  BIGINT       NOT NULL,
    total_minor BIGINT       NOT NULL,
    currency    CHAR(3)      NOT NULL,
    placed_at   BIGINT       NOT NULL,
    updated_at  BIGINT       NOT NULL,
    INDEX orders_user (user_id, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE order_lines (
    order_id   CHAR(36)     CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    line_no    BIGINT       NOT NULL,
    product_id VARCHAR(64)  CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    sku        VARCHAR(64)  NOT NULL,
    title      VARCHAR(300) NOT NULL,
    quantity   BIGINT       NOT NULL,
    unit_minor BIGINT       NOT NULL,
    line_minor BIGINT       NOT NULL,
    currency   CHAR(3)      NOT NULL,
    PRIMARY KEY (order_id, line_no)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE stock (
    product_id VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL PRIMARY KEY,
    available  BIGINT      NOT NULL,
    updated_at BIGINT      NOT NULL,
    CONSTRAINT stock_not_negative CHECK (available >= 0)
) ENGINE=InnoDB;

CREATE TABLE idempotency_keys (
    user_id      VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    idem_key     VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    request_hash CHAR(64)     NOT NULL,
    status       BIGINT       NOT NULL,
    response     MEDIUMTEXT   NOT NULL,
    created_at   BIGINT       NOT NULL,
    PRIMARY KEY (user_id, idem_key)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
