CREATE TABLE sent_log (
    event_id   CHAR(36)     NOT NULL PRIMARY KEY,
    event_type VARCHAR(100) NOT NULL,
    template   VARCHAR(50)  NOT NULL,
    order_id   VARCHAR(64)  NOT NULL,
    recipient  VARCHAR(254) NOT NULL,
    subject    VARCHAR(500) NOT NULL,
    status     VARCHAR(10)  NOT NULL,
    attempts   BIGINT       NOT NULL,
    error      TEXT         NULL,
    at         BIGINT       NOT NULL,
    INDEX sent_log_at (at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE known_orders (
    order_id   VARCHAR(64) NOT NULL PRIMARY KEY,
    snapshot   MEDIUMTEXT  NOT NULL,
    updated_at BIGINT      NOT NULL
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
