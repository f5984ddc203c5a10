-- The console's own record of what operators did (OPS-1): who, when, what.
CREATE TABLE IF NOT EXISTS replays (
    replay_id          bigserial PRIMARY KEY,
    operator           text NOT NULL,
    replayed_at        timestamptz NOT NULL DEFAULT now(),
    kind               text NOT NULL CHECK (kind IN ('kafka', 'notifier')),
    -- kafka: the dead letter (topic:partition:offset) and where it went; notifier: the key
    dead_letter        text NOT NULL,
    original_topic     text,
    original_partition integer,
    original_offset    bigint,
    event_type         text,
    event_id           text,
    reason             text NOT NULL DEFAULT '',
    outcome            text NOT NULL
);
CREATE INDEX IF NOT EXISTS replays_dead_letter ON replays (dead_letter);

CREATE TABLE IF NOT EXISTS customer_lookups (
    lookup_id   bigserial PRIMARY KEY,
    operator    text NOT NULL,
    looked_up_at timestamptz NOT NULL DEFAULT now(),
    customer_id text NOT NULL,
    reason      text NOT NULL CHECK (length(reason) >= 3)
);

CREATE TABLE IF NOT EXISTS job_runs (
    run_id        bigserial PRIMARY KEY,
    operator      text NOT NULL,
    started_at    timestamptz NOT NULL DEFAULT now(),
    kind          text NOT NULL,
    business_date date NOT NULL,
    outcome       text NOT NULL
);
