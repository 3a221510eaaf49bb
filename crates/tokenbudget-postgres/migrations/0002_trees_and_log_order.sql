-- tokenbudget-postgres schema, version 2. Existing rows are kept and filled in.

-- Every reservation carries the root of its budget's tree, so "the held reservations due
-- anywhere in this tree" (which reserve, commit and rollback release before deciding) is one
-- index probe. Filled from `budgets.chain`, whose last element is the root.
ALTER TABLE reservations ADD COLUMN root text;
UPDATE reservations AS r
SET root = b.chain[cardinality(b.chain)]
FROM budgets AS b
WHERE b.id = r.budget_id;
ALTER TABLE reservations ALTER COLUMN root SET NOT NULL;
CREATE INDEX reservations_held_by_root ON reservations (root, expires_at) WHERE state = 'held';
-- Its probes (the due holds of one budget) are now made by tree.
DROP INDEX reservations_held_by_budget;

-- The id of the transaction that wrote each event: the whole-log cursor reads in
-- (xid, seq) order, and only below the oldest transaction still running, so an event is never
-- behind a cursor that has passed its place. Events written before this version are all
-- committed; they get xid 0 and keep their seq order, ahead of every later event.
ALTER TABLE events ADD COLUMN xid xid8 NOT NULL DEFAULT '0';
ALTER TABLE events ALTER COLUMN xid SET DEFAULT pg_current_xact_id();
CREATE INDEX events_by_xid ON events (xid, seq);

-- Usage recorded with no reservation, once per key (its own key space, apart from
-- reservations' idempotency keys).
CREATE TABLE charges (
    key       text   PRIMARY KEY,
    budget_id text   NOT NULL REFERENCES budgets (id),
    tokens    bigint NOT NULL CHECK (tokens >= 0),
    note      text   CHECK (octet_length(note) <= 1024),
    at        bigint NOT NULL
);
