-- The usage ledger (tokenbudget-ledger): one row per model response, merged by its
-- de-duplication key, and one import checkpoint per source file.
CREATE TABLE usage_records (
    dedup_key           TEXT    PRIMARY KEY NOT NULL,
    source              TEXT    NOT NULL,
    machine             TEXT    NOT NULL,
    session_id          TEXT    NOT NULL,
    project             TEXT    NOT NULL,
    model               TEXT    NOT NULL,
    ts                  INTEGER NOT NULL,
    input               INTEGER NOT NULL CHECK (input >= 0),
    output              INTEGER NOT NULL CHECK (output >= 0),
    cache_write_5m      INTEGER NOT NULL CHECK (cache_write_5m >= 0),
    cache_write_1h      INTEGER NOT NULL CHECK (cache_write_1h >= 0),
    cache_read          INTEGER NOT NULL CHECK (cache_read >= 0),
    web_search_requests INTEGER NOT NULL CHECK (web_search_requests >= 0),
    web_fetch_requests  INTEGER NOT NULL CHECK (web_fetch_requests >= 0),
    raw_usage           TEXT    NOT NULL,
    file                TEXT    NOT NULL,
    line_offset         INTEGER NOT NULL,
    -- How many times a more final line replaced the row (0: as first inserted).
    revision            INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX usage_records_by_time ON usage_records (ts, dedup_key);

CREATE TABLE usage_checkpoints (
    file        TEXT    PRIMARY KEY NOT NULL,
    dev         INTEGER NOT NULL,
    inode       INTEGER NOT NULL,
    size        INTEGER NOT NULL,
    mtime_ns    INTEGER NOT NULL,
    line_offset INTEGER NOT NULL,
    head_hash   TEXT    NOT NULL,
    tail_hash   TEXT    NOT NULL
);
