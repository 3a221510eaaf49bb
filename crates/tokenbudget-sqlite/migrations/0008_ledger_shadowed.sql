-- Rule 6 (tokenbudget_ledger::dedup) decided when writing: a record keyed by a message id
-- alone is shadowed once a record of the same message id with a request id is stored. The
-- writer of either row sets the flag in its own transaction, so reads filter one column
-- instead of probing the key index for a sibling row by row. Existing rows are marked here
-- by the probe the reads used to run.
ALTER TABLE usage_records ADD COLUMN shadowed INTEGER NOT NULL DEFAULT 0 CHECK (shadowed IN (0, 1));
UPDATE usage_records SET shadowed = 1
 WHERE EXISTS (SELECT 1 FROM usage_records s
                WHERE s.dedup_key > usage_records.dedup_key || ':'
                  AND s.dedup_key < usage_records.dedup_key || ';');
-- The reports' covering index holds only the counted rows (the key is no longer needed).
DROP INDEX usage_records_aggregate;
CREATE INDEX usage_records_aggregate ON usage_records (ts, model, project, session_id, budget,
    input, output, cache_write_5m, cache_write_1h, cache_read, web_search_requests,
    web_fetch_requests) WHERE shadowed = 0;
