CREATE TABLE partners (
    id               VARCHAR(36)   NOT NULL PRIMARY KEY,
    account_id       VARCHAR(64)   NOT NULL,
    name             VARCHAR(100)  NOT NULL,
    email            VARCHAR(254)  NOT NULL,
    phone            VARCHAR(32)   NOT NULL,
    on_shift         BOOLEAN       NOT NULL,
    postal_prefixes  VARCHAR(600)  NOT NULL,
    circle_lat       DOUBLE        NULL,
    circle_lon       DOUBLE        NULL,
    radius_km        DOUBLE        NULL,
    max_concurrent   BIGINT        NOT NULL,
    max_items        BIGINT        NOT NULL,
    max_weight_grams BIGINT        NULL,
    current_load     BIGINT        NOT NULL,
    created_at       BIGINT        NOT NULL,
    updated_at       BIGINT        NOT NULL,
    CONSTRAINT partners_account_key UNIQUE (account_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE deliveries (
    order_id     VARCHAR(64)  NOT NULL PRIMARY KEY,
    user_id      VARCHAR(64)  NOT NULL,
    status       VARCHAR(20)  NOT NULL,
    partner_id   VARCHAR(36)  NULL,
    postal_code  VARCHAR(20)  NOT NULL,
    lat          DOUBLE       NULL,
    lon          DOUBLE       NULL,
    item_count   BIGINT       NOT NULL,
    weight_grams BIGINT       NOT NULL,
    address      TEXT         NOT NULL,
    reason       VARCHAR(500) NULL,
    assigned_at  BIGINT       NULL,
    created_at   BIGINT       NOT NULL,
    updated_at   BIGINT       NOT NULL,
    INDEX deliveries_partner (partner_id, created_at),
    INDEX deliveries_status (status, created_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE outbox (
    seq        BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    event_id   CHAR(36)     NOT NULL,
    topic      VARCHAR(249) NOT NULL,
    event_key  VARCHAR(255) NOT NULL,
    event_type VARCHAR(100) NOT NULL,
    payload    MEDIUMTEXT   NOT NULL,
    created_at BIGINT       NOT NULL,
    sent_at    BIGINT       NULL,
    INDEX outbox_unsent (sent_at, seq)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE processed_events (
    event_id     CHAR(36) NOT NULL PRIMARY KEY,
    processed_at BIGINT   NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=ascii COLLATE=ascii_bin;
