-- Identity: accounts (personal data AES-GCM encrypted: *_enc columns), one-time codes and
-- tokens (keyed hashes only), sessions with refresh-token families, devices, throttles,
-- the policy view from contracts' events, and the token signing keys (private part
-- encrypted).

CREATE TABLE IF NOT EXISTS accounts (
    customer_id        text PRIMARY KEY,
    username           text NOT NULL,
    username_key       text NOT NULL UNIQUE,
    password_hash      text NOT NULL,
    first_name         text NOT NULL,
    last_name          text NOT NULL,
    birth_date_enc     bytea NOT NULL,
    address_enc        bytea NOT NULL,
    email              text NOT NULL,
    mobile_enc         bytea,
    pending_mobile_enc bytea,
    pending_email      text,
    email_verified     boolean NOT NULL DEFAULT false,
    customer           boolean NOT NULL DEFAULT false,
    activated          boolean NOT NULL DEFAULT false,
    two_factor         boolean NOT NULL DEFAULT false,
    sms_factor_locked  boolean NOT NULL DEFAULT false,
    sms_failures       integer NOT NULL DEFAULT 0,
    status             text NOT NULL,
    registered_at      timestamptz NOT NULL,
    last_login_at      timestamptz,
    version            integer NOT NULL
);
CREATE INDEX IF NOT EXISTS accounts_email ON accounts (email);

CREATE TABLE IF NOT EXISTS codes (
    code_id      text PRIMARY KEY,
    kind         text NOT NULL,
    customer_id  text NOT NULL,
    code_hash    text NOT NULL,
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    attempts     integer NOT NULL DEFAULT 0,
    used_at      timestamptz,
    purpose      text NOT NULL DEFAULT '',
    reference    text NOT NULL DEFAULT '',
    target       text NOT NULL DEFAULT '',
    confirmed_at timestamptz,
    consumed_at  timestamptz
);
CREATE INDEX IF NOT EXISTS codes_customer ON codes (customer_id, kind);

CREATE TABLE IF NOT EXISTS sessions (
    session_id     text PRIMARY KEY,
    customer_id    text NOT NULL,
    created_at     timestamptz NOT NULL,
    last_used_at   timestamptz NOT NULL,
    auth_time      timestamptz NOT NULL,
    amr            text[] NOT NULL,
    device_id      text,
    client         text NOT NULL DEFAULT '',
    revoked_at     timestamptz,
    revoked_reason text NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS sessions_customer ON sessions (customer_id);

CREATE TABLE IF NOT EXISTS refresh_tokens (
    token_hash text PRIMARY KEY,
    session_id text NOT NULL REFERENCES sessions (session_id),
    issued_at  timestamptz NOT NULL,
    spent_at   timestamptz
);

CREATE TABLE IF NOT EXISTS devices (
    device_id    text PRIMARY KEY,
    customer_id  text NOT NULL,
    public_key   bytea NOT NULL,
    name         text NOT NULL,
    bound_at     timestamptz NOT NULL,
    revoked_at   timestamptz,
    last_used_at timestamptz
);
CREATE INDEX IF NOT EXISTS devices_customer ON devices (customer_id);

CREATE TABLE IF NOT EXISTS throttles (
    key             text PRIMARY KEY,
    failures        integer NOT NULL,
    last_failure_at timestamptz,
    blocked_until   timestamptz,
    window_start    timestamptz,
    window_count    integer NOT NULL
);

CREATE TABLE IF NOT EXISTS policies (
    policy_id        text PRIMARY KEY,
    policy_number    text NOT NULL,
    carrier          text NOT NULL,
    policyholder_ids text[] NOT NULL,
    cancelled        boolean NOT NULL
);
CREATE INDEX IF NOT EXISTS policies_number ON policies (policy_number);
CREATE INDEX IF NOT EXISTS policies_holders ON policies USING gin (policyholder_ids);

CREATE TABLE IF NOT EXISTS signing_keys (
    kid             text PRIMARY KEY,
    private_jwk_enc bytea NOT NULL,
    public_jwk      jsonb NOT NULL,
    created_at      timestamptz NOT NULL,
    retired_at      timestamptz
);
