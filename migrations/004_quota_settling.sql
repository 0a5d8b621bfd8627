-- The shared quota ledger, settled in the background: each node keeps a reservation
-- row per account it serves, grown before data flows and settled into `used` about once
-- a second. `changes` counts the settlements of an account's `used`, so that setting
-- `used` from a scan of the home (a reconcile) can tell that nothing was settled while
-- the scan ran.
ALTER TABLE quota ADD COLUMN changes bigint NOT NULL DEFAULT 0;
