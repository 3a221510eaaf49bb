-- Version 2: every reservation knows its tree's root, so "the held reservations due in this
-- tree" is one index probe; and charges (usage recorded without a reservation).
--
-- SQLite cannot add a NOT NULL column with a foreign key to a table in place, so
-- reservations is rebuilt (nothing references it), keeping every row. The root of each
-- reservation's budget is found by walking `parent` links; a budget whose walk finds no root
-- leaves `root` NULL and fails the NOT NULL check, so a corrupt database stops the migration
-- instead of losing a row.

CREATE TABLE reservations_v2 (
    id              TEXT    PRIMARY KEY NOT NULL,
    budget_id       TEXT    NOT NULL REFERENCES budgets (id),
    -- The root of budget_id's tree (budget_id itself for a workflow budget). Parent links
    -- never change, so neither does this.
    root            TEXT    NOT NULL REFERENCES budgets (id),
    tokens          INTEGER NOT NULL CHECK (tokens >= 1),
    state           TEXT    NOT NULL CHECK (state IN ('held', 'committed', 'released', 'expired')),
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    idempotency_key TEXT,
    actual          INTEGER CHECK (actual >= 0),
    settled_at      INTEGER
);

WITH RECURSIVE up (budget, id, parent, depth) AS (
    SELECT id, id, parent, 0 FROM budgets
    UNION ALL
    SELECT up.budget, b.id, b.parent, up.depth + 1
    FROM up JOIN budgets b ON b.id = up.parent
    WHERE up.depth < 64
),
roots (budget, root) AS (SELECT budget, id FROM up WHERE parent IS NULL)
INSERT INTO reservations_v2 (id, budget_id, root, tokens, state, created_at, expires_at,
                             idempotency_key, actual, settled_at)
SELECT r.id, r.budget_id, roots.root, r.tokens, r.state, r.created_at, r.expires_at,
       r.idempotency_key, r.actual, r.settled_at
FROM reservations r LEFT JOIN roots ON roots.budget = r.budget_id;

DROP TABLE reservations;
ALTER TABLE reservations_v2 RENAME TO reservations;

CREATE UNIQUE INDEX reservations_idempotency_key
    ON reservations (idempotency_key) WHERE idempotency_key IS NOT NULL;

-- Expired holds anywhere in a tree (reserve, commit, rollback, extend, charge, status).
CREATE INDEX reservations_held_by_root
    ON reservations (root, expires_at) WHERE state = 'held';

-- Every expired hold (sweep, statuses).
CREATE INDEX reservations_held_by_expiry
    ON reservations (expires_at) WHERE state = 'held';

-- Usage recorded without a reservation; the key is the charge's idempotency key, a key
-- space of its own (apart from reservations' idempotency keys).
CREATE TABLE charges (
    key       TEXT    PRIMARY KEY NOT NULL,
    budget_id TEXT    NOT NULL REFERENCES budgets (id),
    tokens    INTEGER NOT NULL CHECK (tokens >= 0),
    note      TEXT,
    at        INTEGER NOT NULL
);
