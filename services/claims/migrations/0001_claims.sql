-- Claims: the policy view from contracts' events (CT-3), claims with their lifecycle state,
-- history and attachment metadata (the bytes in `blobs`, servicekit.uploads), customers'
-- Idempotency-Keys, claims-handling messages applied, and default channels (CL-5).

CREATE TABLE IF NOT EXISTS policies (
    policy_id          text PRIMARY KEY,
    policy_number      text NOT NULL,
    product_line       text NOT NULL,
    carrier            text NOT NULL,
    policyholder_ids   text[] NOT NULL,
    insured_person_ids text[] NOT NULL,
    visible_to_insured boolean NOT NULL,
    start_date         date NOT NULL,
    cancelled_from     date,
    version            integer NOT NULL
);

CREATE SEQUENCE IF NOT EXISTS claim_numbers;

CREATE TABLE IF NOT EXISTS claims (
    claim_id                 text PRIMARY KEY,
    claim_number             text NOT NULL UNIQUE,
    customer_id              text NOT NULL,
    policy_id                text NOT NULL,
    policy_number            text NOT NULL,
    claim_type               text NOT NULL,
    product_line             text NOT NULL,
    carrier                  text NOT NULL,
    incident_date            date NOT NULL,
    place                    text NOT NULL,
    description              text NOT NULL,
    reported_at              timestamptz NOT NULL,
    not_tracked              text,
    status                   text NOT NULL,
    clock_start              date,
    paused_working_days      integer NOT NULL,
    waiting_since            date,
    expected_completion_date date,
    missing_documents        text[] NOT NULL,
    settled_amount_cents     bigint,
    reason                   text NOT NULL,
    channel                  text NOT NULL,
    channel_chosen_for_claim boolean NOT NULL,
    attachments              jsonb NOT NULL,
    history                  jsonb NOT NULL,
    version                  integer NOT NULL
);
CREATE INDEX IF NOT EXISTS claims_of_customer ON claims (customer_id, reported_at DESC);

CREATE TABLE IF NOT EXISTS submissions (
    customer_id     text NOT NULL,
    idempotency_key text NOT NULL,
    fingerprint     text NOT NULL,
    claim_id        text NOT NULL REFERENCES claims (claim_id),
    PRIMARY KEY (customer_id, idempotency_key)
);

CREATE TABLE IF NOT EXISTS handled_messages (
    source_system text NOT NULL,
    message_id    text NOT NULL,
    claim_id      text NOT NULL REFERENCES claims (claim_id),
    handled_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source_system, message_id)
);

CREATE TABLE IF NOT EXISTS preferences (
    customer_id     text PRIMARY KEY,
    default_channel text NOT NULL
);

CREATE TABLE IF NOT EXISTS blobs (
    blob_id text PRIMARY KEY,
    content_type text NOT NULL,
    size bigint NOT NULL CHECK (size >= 0),
    sha256 text NOT NULL,
    content bytea NOT NULL,
    stored_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE blobs ALTER COLUMN content SET STORAGE EXTERNAL;
