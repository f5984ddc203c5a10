-- Operator accounts (OPS-1): separate from customers' accounts, second factor mandatory
-- (TOTP; the secret AES-256-GCM encrypted like other secrets of this schema).
CREATE TABLE IF NOT EXISTS operators (
    operator_id     text PRIMARY KEY,
    username        text NOT NULL,
    username_key    text NOT NULL UNIQUE,
    password_hash   text NOT NULL,
    totp_secret_enc bytea NOT NULL,
    created_at      timestamptz NOT NULL,
    last_login_at   timestamptz,
    last_totp_step  bigint NOT NULL DEFAULT 0,
    disabled_at     timestamptz
);
