-- The ledger's reports sum in the database (UsageStore::aggregate): a covering index over a
-- time range holds every column they group by and sum, plus the key the rule-6 probe
-- needs, so a report scans this index and never the table's rows (whose raw usage JSON is
-- most of their size).
CREATE INDEX usage_records_aggregate ON usage_records (ts, model, project, session_id, budget,
    input, output, cache_write_5m, cache_write_1h, cache_read, web_search_requests,
    web_fetch_requests, dedup_key);
