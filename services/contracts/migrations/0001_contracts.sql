-- Projections of the contracts service, kept in the same transaction as the events.

-- Which customers each policy concerns (holders, insured persons): "my contracts" lookups.
CREATE TABLE customer_policies (
    customer_id text NOT NULL,
    policy_id   text NOT NULL,
    PRIMARY KEY (customer_id, policy_id)
);

-- Customers who entered their activation code (ID-3), from identity's events.
CREATE TABLE activated_customers (
    customer_id  text        PRIMARY KEY,
    activated_at timestamptz NOT NULL
);
