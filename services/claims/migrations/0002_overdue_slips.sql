-- CL-3 overdue slips: the working days added when a claim's date passed before it was
-- decided, and the index the slip job finds tracked claims by their expected date with.

ALTER TABLE claims ADD COLUMN IF NOT EXISTS extended_working_days integer NOT NULL DEFAULT 0;

CREATE INDEX IF NOT EXISTS claims_tracked_by_date ON claims (expected_completion_date)
    WHERE not_tracked IS NULL;
