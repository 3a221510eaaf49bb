-- The ledger learns the gateway: whether a record's usage is partly estimated (a stream cut
-- before its final usage event), and the budget a response was charged to. Existing rows
-- are transcript records: reported, charged to nothing.
ALTER TABLE usage_records ADD COLUMN estimated INTEGER NOT NULL DEFAULT 0 CHECK (estimated IN (0, 1));
ALTER TABLE usage_records ADD COLUMN budget TEXT;
