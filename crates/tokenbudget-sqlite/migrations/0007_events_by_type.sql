-- The log gains RESERVE_REFUSED and RESERVE_CLAMPED, events that change no state and are
-- read back by type across every budget, newest first (BudgetStore::recent_events). The
-- (type, seq) index that read probes has existed since version 1; this version marks the new
-- event types, so that an older build refuses the database instead of failing on an event
-- it cannot parse.
CREATE INDEX IF NOT EXISTS events_type_seq ON events (type, seq);
