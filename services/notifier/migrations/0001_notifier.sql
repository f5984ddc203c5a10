-- The notifier's own data: its contact view (NT-3), one row per message (NT-4) and the
-- log of what happened to each message (OPS-1). Events, outbox and inbox come from
-- servicekit's common migration.

-- NT-3: per customer, the fold of identity, claims and documents events (ContactView).
-- `view` is NULL while only a lock placeholder exists (see adapters/store.py).
CREATE TABLE contacts (
    customer_id      text        PRIMARY KEY,
    view             jsonb,
    identity_version integer     NOT NULL DEFAULT 0,
    updated_at       timestamptz NOT NULL
);

-- NT-4: one row per (triggering event, channel, recipient) = message_key. The primary key
-- is the idempotency guarantee: a redelivered or replayed event inserts nothing new.
CREATE TABLE deliveries (
    message_key     text        PRIMARY KEY,
    customer_id     text        NOT NULL,
    kind            text        NOT NULL,
    channel         text        NOT NULL CHECK (channel IN ('email', 'sms', 'letter')),
    event_id        uuid        NOT NULL,
    event_type      text        NOT NULL,
    status          text        NOT NULL CHECK (status IN
                        ('queued', 'sending', 'sent', 'failed', 'dead', 'expired', 'suppressed')),
    attempts        integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    replays         integer     NOT NULL DEFAULT 0 CHECK (replays >= 0),
    next_attempt_at timestamptz,
    lease_until     timestamptz,
    -- Start of the latest attempt: the send time the NT-6 rate limits count.
    attempted_at    timestamptz,
    not_after       timestamptz,
    -- NT-6 bucket: channel, rate class and a hash of the recipient (no personal data).
    rate_bucket     text        NOT NULL,
    -- The planned OutgoingMessage (recipient, template context) and its text, rendered
    -- once at enqueue time so every attempt sends the same bytes. `rendered` is NULL when
    -- the NT-5 guard refused the text, and both are scrubbed of codes once a code message
    -- is final (sent, expired, suppressed).
    message         jsonb       NOT NULL,
    rendered        jsonb,
    provider_ref    text,
    last_error      text,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at)
    WHERE status IN ('queued', 'failed');
CREATE INDEX deliveries_leased ON deliveries (lease_until) WHERE status = 'sending';
CREATE INDEX deliveries_sent_in_bucket ON deliveries (rate_bucket, attempted_at)
    WHERE status IN ('sent', 'sending');
CREATE INDEX deliveries_by_customer ON deliveries (customer_id, created_at DESC);
CREATE INDEX deliveries_by_status ON deliveries (status, updated_at DESC);

-- OPS-1: every transition of every message, for operators (never message content).
CREATE TABLE delivery_log (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_key text        NOT NULL REFERENCES deliveries (message_key),
    status      text        NOT NULL,
    at          timestamptz NOT NULL,
    attempt     integer     NOT NULL DEFAULT 0,
    detail      text
);
CREATE INDEX delivery_log_of_message ON delivery_log (message_key, id);
