-- The usage ledger (tokenbudget-ledger): one row per model response, merged by its
-- de-duplication key, and one import checkpoint per source file. Text that the merge rule
-- or the ordering compares is COLLATE "C" (bytewise, as Rust compares strings).
CREATE TABLE usage_records (
    dedup_key           text   COLLATE "C" PRIMARY KEY,
    source              text   NOT NULL,
    machine             text   NOT NULL,
    session_id          text   NOT NULL,
    project             text   NOT NULL,
    model               text   NOT NULL,
    ts                  bigint NOT NULL,
    input               bigint NOT NULL CHECK (input >= 0),
    output              bigint NOT NULL CHECK (output >= 0),
    cache_write_5m      bigint NOT NULL CHECK (cache_write_5m >= 0),
    cache_write_1h      bigint NOT NULL CHECK (cache_write_1h >= 0),
    cache_read          bigint NOT NULL CHECK (cache_read >= 0),
    web_search_requests bigint NOT NULL CHECK (web_search_requests >= 0),
    web_fetch_requests  bigint NOT NULL CHECK (web_fetch_requests >= 0),
    raw_usage           text   COLLATE "C" NOT NULL,
    file                text   COLLATE "C" NOT NULL,
    line_offset         bigint NOT NULL,
    -- How many times a more final line replaced the row (0: as first inserted).
    revision            bigint NOT NULL DEFAULT 0
);
CREATE INDEX usage_records_by_time ON usage_records (ts, dedup_key);

CREATE TABLE usage_checkpoints (
    file        text   COLLATE "C" PRIMARY KEY,
    dev         bigint NOT NULL,
    inode       bigint NOT NULL,
    size        bigint NOT NULL,
    mtime_ns    bigint NOT NULL,
    line_offset bigint NOT NULL,
    head_hash   text   NOT NULL,
    tail_hash   text   NOT NULL
);
