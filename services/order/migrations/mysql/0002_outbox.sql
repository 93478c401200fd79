-- Copied from storefront_kit::outbox (MYSQL_DDL).
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
