-- What decides "the same request again" (README, "Duplicates and idempotency keys"): one row
-- per (scope, key) - an upstream system's message id, a customer's Idempotency-Key or mTAN
-- id for one policy - with the fingerprint of the canonical body it first came with and the
-- ids of the events it recorded. Written in the same transaction as those events.
CREATE TABLE idempotency_records (
    scope       text        NOT NULL,
    key         text        NOT NULL,
    fingerprint text        NOT NULL,
    event_ids   uuid[]      NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key)
);
