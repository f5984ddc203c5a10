-- The loyalty service's projections. Every table here can be rebuilt from the topics.

-- Every input fact, once per customer it concerns: the set each ledger is folded from.
CREATE TABLE facts (
    customer_id text        NOT NULL,
    event_id    text        NOT NULL,
    fact_type   text        NOT NULL,
    occurred_at timestamptz NOT NULL,
    payload     jsonb       NOT NULL,
    PRIMARY KEY (customer_id, event_id)
);

-- The ledger of each customer as of the last job run: for operators and dashboards.
CREATE TABLE statements (
    customer_id text        PRIMARY KEY,
    as_of       timestamptz NOT NULL,
    balance     integer     NOT NULL CHECK (balance >= 0),
    membership  text        NOT NULL
);

-- Ledger entries and warnings already announced on the loyalty topic, so each goes out once.
CREATE TABLE announced (
    customer_id text NOT NULL,
    entry_id    text NOT NULL,
    PRIMARY KEY (customer_id, entry_id)
);
