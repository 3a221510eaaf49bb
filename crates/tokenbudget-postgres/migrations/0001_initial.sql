-- tokenbudget-postgres schema, version 1.
-- Amounts are BIGINT (the core caps them at i64::MAX); times are BIGINT microseconds since the
-- Unix epoch (Timestamp::as_micros), so a value read back equals the value written.

-- `chain` is the budget's id followed by its ancestors' up to the root. Parent links never
-- change, so it is written once, at creation, and lets a transaction find every id it must lock
-- with one index lookup instead of a recursive walk.
CREATE TABLE budgets (
    id           text   PRIMARY KEY,
    parent       text   REFERENCES budgets (id),
    chain        text[] NOT NULL CHECK (chain[1] = id),
    limit_tokens bigint NOT NULL CHECK (limit_tokens > 0),
    used         bigint NOT NULL CHECK (used >= 0),
    reserved     bigint NOT NULL CHECK (reserved >= 0),
    held         bigint NOT NULL CHECK (held >= 0),
    created_at   bigint NOT NULL
);

CREATE TABLE reservations (
    id              uuid   PRIMARY KEY,
    budget_id       text   NOT NULL REFERENCES budgets (id),
    tokens          bigint NOT NULL CHECK (tokens > 0),
    state           text   NOT NULL CHECK (state IN ('held', 'committed', 'released', 'expired')),
    created_at      bigint NOT NULL,
    expires_at      bigint NOT NULL,
    idempotency_key text   UNIQUE,
    actual          bigint CHECK (actual >= 0),
    settled_at      bigint
);

-- Held reservations due on a chain (reserve, commit, rollback) and due anywhere (sweep).
CREATE INDEX reservations_held_by_budget ON reservations (budget_id, expires_at) WHERE state = 'held';
CREATE INDEX reservations_held_by_expiry ON reservations (expires_at, id) WHERE state = 'held';

-- The log. A budget's events are written only while its row is locked FOR UPDATE (or, for
-- BUDGET_CREATED, by the transaction inserting the row), so for any one budget the order of
-- `seq` is the order of commit.
CREATE TABLE events (
    seq            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    budget_id      text   NOT NULL REFERENCES budgets (id),
    at             bigint NOT NULL,
    type           text   NOT NULL,
    reservation_id uuid,
    kind           jsonb  NOT NULL
);

CREATE INDEX events_by_budget ON events (budget_id, seq);
