-- A customer's facts by business time, with their event ids: a statement folded on from a
-- snapshot reads only the facts after its cut (a range, not every fact of the customer),
-- and checks the facts at or before it (count + checksum of event ids) from this index
-- alone. Built in the migration's transaction: writes to facts wait until it is built.
CREATE INDEX facts_by_time ON facts (customer_id, occurred_at) INCLUDE (event_id);
