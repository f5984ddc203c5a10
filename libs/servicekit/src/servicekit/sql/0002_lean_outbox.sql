-- Lean outbox rows for stream events: the row names the stored event (`event_ref`), its
-- topic, key, CloudEvents source and traceparent; the relay reads the body and the rest of
-- the envelope from `events`, so an event is serialised and stored once. Rows queued by
-- `EventStore.enqueue` (messages that are not stream events) keep their whole record in
-- `headers` + `payload`, as do rows queued before this migration.
ALTER TABLE outbox
    ADD COLUMN IF NOT EXISTS event_ref uuid,
    ADD COLUMN IF NOT EXISTS source text,
    ADD COLUMN IF NOT EXISTS traceparent text,
    ALTER COLUMN headers DROP NOT NULL,
    ALTER COLUMN payload DROP NOT NULL;

ALTER TABLE outbox ADD CONSTRAINT outbox_lean_or_whole
    CHECK (event_ref IS NOT NULL OR (headers IS NOT NULL AND payload IS NOT NULL));
