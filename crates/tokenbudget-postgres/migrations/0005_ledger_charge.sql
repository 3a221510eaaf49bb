-- The ledger learns the gateway: whether a record's usage is partly estimated (a stream cut
-- before its final usage event), and the budget a response was charged to (compared
-- bytewise by the merge rule, hence COLLATE "C"). Existing rows are transcript records:
-- reported, charged to nothing.
ALTER TABLE usage_records
    ADD COLUMN estimated boolean NOT NULL DEFAULT false,
    ADD COLUMN budget    text COLLATE "C";
