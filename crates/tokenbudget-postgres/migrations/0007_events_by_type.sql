-- The log gains RESERVE_REFUSED and RESERVE_CLAMPED, events that change no state and are
-- read back by type across every budget, newest first (the dashboard's recent refusals and
-- clamps: BudgetStore::recent_events). One probe of this index per type reads at most a
-- page of rows, however long the log.
CREATE INDEX events_by_type ON events (type, seq);
