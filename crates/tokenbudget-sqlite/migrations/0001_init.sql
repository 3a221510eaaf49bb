-- Budgets, reservations and the append-only event log.
-- Amounts are INTEGER (i64), timestamps INTEGER microseconds since the Unix epoch,
-- reservation ids TEXT hyphenated UUIDs.

CREATE TABLE budgets (
    id          TEXT    PRIMARY KEY NOT NULL,
    parent      TEXT    REFERENCES budgets (id),
    limit_tokens INTEGER NOT NULL CHECK (limit_tokens >= 1),
    used        INTEGER NOT NULL CHECK (used >= 0),
    reserved    INTEGER NOT NULL CHECK (reserved >= 0),
    held        INTEGER NOT NULL CHECK (held >= 0),
    created_at  INTEGER NOT NULL
);

CREATE INDEX budgets_parent ON budgets (parent) WHERE parent IS NOT NULL;

CREATE TABLE reservations (
    id              TEXT    PRIMARY KEY NOT NULL,
    budget_id       TEXT    NOT NULL REFERENCES budgets (id),
    tokens          INTEGER NOT NULL CHECK (tokens >= 1),
    state           TEXT    NOT NULL CHECK (state IN ('held', 'committed', 'released', 'expired')),
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    idempotency_key TEXT,
    actual          INTEGER CHECK (actual >= 0),
    settled_at      INTEGER
);

CREATE UNIQUE INDEX reservations_idempotency_key
    ON reservations (idempotency_key) WHERE idempotency_key IS NOT NULL;

-- Expired holds on a chain's budgets (reserve, commit, rollback).
CREATE INDEX reservations_held_by_budget
    ON reservations (budget_id, expires_at) WHERE state = 'held';

-- Every expired hold (sweep).
CREATE INDEX reservations_held_by_expiry
    ON reservations (expires_at) WHERE state = 'held';

CREATE TABLE events (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    budget_id      TEXT    NOT NULL REFERENCES budgets (id),
    at             INTEGER NOT NULL,
    type           TEXT    NOT NULL,
    reservation_id TEXT,
    -- serde_json of tokenbudget_core::EventKind, `type` tag included.
    payload        TEXT    NOT NULL
);

CREATE INDEX events_budget_seq ON events (budget_id, seq);
CREATE INDEX events_type_seq ON events (type, seq);
CREATE INDEX events_reservation ON events (reservation_id) WHERE reservation_id IS NOT NULL;
