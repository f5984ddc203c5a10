-- ID-3: the policyholders' name, birth date and postal address from contracts' events
-- (PolicyIssued / PolicyholdersChanged `policyholders`), AES-256-GCM encrypted as one JSON
-- list (associated data "policy_holders"); NULL for policies from older events.
ALTER TABLE policies ADD COLUMN IF NOT EXISTS holders_enc bytea;
ALTER TABLE policies ADD COLUMN IF NOT EXISTS holders_at timestamptz;
