CREATE TABLE accounts (
    id            VARCHAR(36)  NOT NULL PRIMARY KEY,
    email         VARCHAR(254) NOT NULL,
    name          VARCHAR(100) NOT NULL,
    password_hash VARCHAR(255) NOT NULL,
    roles         VARCHAR(64)  NOT NULL,
    created_at    BIGINT       NOT NULL,
    CONSTRAINT accounts_email_key UNIQUE (email)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE refresh_families (
    id         VARCHAR(36) NOT NULL PRIMARY KEY,
    account_id VARCHAR(36) NOT NULL,
    created_at BIGINT      NOT NULL,
    revoked_at BIGINT      NULL,
    INDEX refresh_families_account (account_id)
) ENGINE=InnoDB;

CREATE TABLE refresh_tokens (
    token_hash CHAR(64)    NOT NULL PRIMARY KEY,
    family_id  VARCHAR(36) NOT NULL,
    account_id VARCHAR(36) NOT NULL,
    expires_at BIGINT      NOT NULL,
    spent_at   BIGINT      NULL,
    INDEX refresh_tokens_family (family_id)
) ENGINE=InnoDB;

CREATE TABLE login_failures (
    scope_key    VARCHAR(320) NOT NULL PRIMARY KEY,
    failures     BIGINT       NOT NULL,
    last_failure BIGINT       NOT NULL,
    locked_until BIGINT       NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
