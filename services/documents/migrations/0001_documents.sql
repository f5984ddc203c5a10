-- Documents service (DOC-1..DOC-5). Every stored byte is sealed (AES-256-GCM, a data key
-- per blob wrapped by a master key with an id): blobs hold ciphertext only.

CREATE TABLE IF NOT EXISTS blobs (
    blob_id text PRIMARY KEY,
    content_type text NOT NULL,
    size bigint NOT NULL CHECK (size >= 0),
    sha256 text NOT NULL,
    content bytea NOT NULL,
    stored_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE blobs ALTER COLUMN content SET STORAGE EXTERNAL;

CREATE TABLE data_keys (
    blob_id text PRIMARY KEY REFERENCES blobs (blob_id) ON DELETE CASCADE,
    key_id text NOT NULL,
    wrapped_key bytea NOT NULL
);
CREATE INDEX data_keys_by_master ON data_keys (key_id);

CREATE TABLE documents (
    document_id text PRIMARY KEY,
    customer_id text NOT NULL,
    source_system text NOT NULL,
    source_message_id text NOT NULL,
    category text NOT NULL,
    title text NOT NULL,
    policy_number text,
    claim_number text,
    answers_message_id text,
    sensitive boolean NOT NULL,
    written_form boolean NOT NULL,
    delivery text NOT NULL CHECK (delivery IN ('mailbox', 'post')),
    blob_id text NOT NULL REFERENCES blobs (blob_id),
    content_type text NOT NULL,
    size bigint NOT NULL,
    filename text NOT NULL,
    issued_at timestamptz NOT NULL,
    available_at timestamptz NOT NULL,
    read_at timestamptz,
    UNIQUE (source_system, source_message_id)
);
CREATE INDEX documents_mailbox ON documents (customer_id, available_at DESC, document_id DESC);

CREATE TABLE messages (
    message_id text PRIMARY KEY,
    customer_id text NOT NULL,
    subject text NOT NULL,
    body_blob_id text NOT NULL REFERENCES blobs (blob_id),
    body_size bigint NOT NULL,
    policy_number text,
    claim_number text,
    sent_at timestamptz NOT NULL,
    answered_at timestamptz,
    answer_document_ids text[] NOT NULL DEFAULT '{}'
);
CREATE INDEX messages_by_customer ON messages (customer_id, sent_at DESC, message_id DESC);

CREATE TABLE attachments (
    attachment_id text PRIMARY KEY,
    message_id text NOT NULL REFERENCES messages (message_id),
    customer_id text NOT NULL,
    position int NOT NULL,
    blob_id text NOT NULL REFERENCES blobs (blob_id),
    content_type text NOT NULL,
    size bigint NOT NULL,
    filename text NOT NULL
);
CREATE INDEX attachments_of_message ON attachments (message_id, position);

CREATE TABLE preferences (
    customer_id text PRIMARY KEY,
    email text,
    email_verified boolean NOT NULL DEFAULT false,
    email_instead_of_letter boolean NOT NULL DEFAULT false,
    cancelled boolean NOT NULL DEFAULT false,
    changed_at timestamptz
);
