//! Every statement the store runs. Tables are unqualified: each connection's `search_path` is
//! the configured schema.
//!
//! # Lock order
//!
//! A budget tree is a root budget and everything under it. Every writing transaction locks
//! with statements of one shape ([`lock_chain!`]): first the **advisory lock of each tree** it
//! is about to touch (`pg_advisory_xact_lock` on a hash of schema and root id, in ascending
//! key order), then the budget rows, **roots first** and the rest in id order
//! (`ORDER BY parent IS NULL DESC, id FOR UPDATE`; `FOR UPDATE` locks rows in the order the
//! sort emits them). Reserve, commit and rollback lock their chain (the budget and every
//! ancestor, from the `chain` column, which never changes); then, having read the tree's due
//! holds, the chains of those outside it ([`LOCK_MORE`], the same tree). Create locks the
//! parent's chain; the sweep locks the chains of the due holds it releases.
//!
//! Why that cannot deadlock:
//!
//! - A transaction locks a budget row only while holding the advisory lock of the row's tree
//!   (taken earlier in the same statement, from the same snapshot of the seeds), and keeps
//!   both until it ends. So two transactions never hold rows of one tree at once, and a row
//!   lock never waits for another writer: all waiting happens on the advisory locks. That is
//!   why the due holds' chains, learned only after the first lock, can be locked safely.
//! - A transaction waiting for a tree's advisory lock holds only advisory locks with smaller
//!   keys (several trees, as in a sweep, are taken in key order; everything else has one
//!   tree). Every wait goes to a larger key: no cycle. Two trees whose keys collide share one
//!   lock, which only serializes them.
//! - Behind that, rows are still locked roots first, so even a row lock taken outside the
//!   scheme (a tree that appeared between statements) would wait only for a root: a
//!   transaction holding a non-root row holds its root.
//! - Foreign keys take `FOR KEY SHARE` on the referenced budget, always a row the transaction
//!   has already locked (the reservation's or event's budget, the new budget's parent).
//!
//! Why an advisory lock and not the root row alone: locking a row gives the transaction its
//! id (`xid`) before it waits, so two writers of a budget could get ids in the opposite order
//! of their commits. An advisory lock needs no id: the id is assigned at the first row lock,
//! after the tree's advisory lock is granted, so for any one budget the order of `xid` is the
//! order of commit, and the whole-log cursor ([`LOG_AFTER`], in (xid, seq) order) keeps every
//! budget's events in `seq` order.

/// The columns of a budget row, in the order `rows::budget` reads them.
macro_rules! budget_columns {
    () => {
        "id, parent, limit_tokens, used, reserved, held, created_at, unit, period, window_start, closed"
    };
}

/// The columns of a reservation row, in the order `rows::reservation` reads them (its tree's
/// `root` is not part of the model).
macro_rules! reservation_columns {
    () => {
        "id, budget_id, tokens, state, created_at, expires_at, idempotency_key, actual, settled_at, model"
    };
}

/// The roots of the trees of every budget in `$seeds`: the last element of each chain.
macro_rules! root_ids {
    ($seeds:expr) => {
        concat!(
            "ARRAY (SELECT chain[cardinality(chain)] FROM budgets WHERE id = ANY (",
            $seeds,
            "))"
        )
    };
}

/// Locks the trees of `$seeds` (their advisory locks, in key order), then the chains of
/// `$seeds`, roots first, and returns the chains (see the module docs). `$seeds` is evaluated
/// once, so the trees locked are exactly those of the rows locked.
///
/// The advisory locks are taken before any row: the `trees` row joins every budget row, and
/// `FOR UPDATE` locks rows only above the sort, once the whole join is computed.
macro_rules! lock_chain {
    ($seeds:expr) => {
        concat!(
            "WITH seeds AS MATERIALIZED (SELECT ",
            $seeds,
            " AS ids),\n",
            "trees AS MATERIALIZED (\n",
            "    SELECT count(pg_advisory_xact_lock(k)) AS n FROM (\n",
            "        SELECT DISTINCT ",
            tree_key!("s.chain[cardinality(s.chain)]"),
            " AS k\n",
            "        FROM budgets AS s, seeds WHERE s.id = ANY (seeds.ids)\n",
            "        ORDER BY k OFFSET 0\n",
            "    ) AS keys\n",
            ")\n",
            "SELECT ",
            budget_columns!(),
            " FROM budgets, trees\n",
            "WHERE id = ANY (ARRAY (SELECT unnest(s.chain) FROM budgets AS s, seeds ",
            "WHERE s.id = ANY (seeds.ids)))\n",
            "ORDER BY parent IS NULL DESC, id\n",
            "FOR UPDATE OF budgets"
        )
    };
}

/// The advisory lock key of the tree whose root is `$root`: a 64-bit hash of the schema and
/// the root's id (trees of other schemas on the database do not wait for each other).
macro_rules! tree_key {
    ($root:expr) => {
        concat!(
            "hashtextextended(current_schema() || '/' || ",
            $root,
            ", 0)"
        )
    };
}

/// The decision's time, in microseconds: the caller's `$n` when given (`ClockSource::Caller`),
/// else the database's clock at the moment the expression runs.
macro_rules! clock {
    ($param:expr) => {
        concat!(
            "coalesce(",
            $param,
            "::bigint, (extract(epoch FROM clock_timestamp()) * 1000000)::bigint)"
        )
    };
}

/// Locks the chains of the budgets `$1::text[]` and of the reservations `$2::uuid[]`: a
/// batch's commands.
pub(crate) const LOCK_BATCH: &str = lock_chain!(
    "$1::text[] || ARRAY (SELECT budget_id FROM reservations WHERE id = ANY ($2::uuid[]))"
);

/// After [`LOCK_BATCH`], with its `$1`, `$2`: the reservations `$2`, those holding the keys
/// `$3`, and every held reservation due in the locked trees, flagged by why
/// each was read, with the decision's time last.
pub(crate) const READ_BATCH: &str = concat!(
    "WITH clock AS MATERIALIZED (SELECT ",
    clock!("$4"),
    " AS now)\n",
    "SELECT r.*, clock.now FROM clock LEFT JOIN LATERAL (\n",
    "    SELECT ",
    reservation_columns!(),
    ", true AS target, false AS by_key, false AS due\n",
    "    FROM reservations WHERE id = ANY ($2::uuid[])\n",
    "    UNION ALL\n",
    "    SELECT ",
    reservation_columns!(),
    ", false, true, false\n",
    "    FROM reservations WHERE idempotency_key = ANY ($3::text[])\n",
    "    UNION ALL\n",
    "    SELECT ",
    reservation_columns!(),
    ", false, false, true\n",
    "    FROM reservations\n",
    "    WHERE state = 'held' AND root = ANY (",
    root_ids!(
        "$1::text[] || ARRAY (SELECT budget_id FROM reservations WHERE id = ANY ($2::uuid[]))"
    ),
    ") AND expires_at <= clock.now\n",
    ") AS r ON true\n",
    "ORDER BY r.expires_at, r.id"
);

/// The charges holding the keys `$1`.
pub(crate) const CHARGES: &str =
    "SELECT key, budget_id, tokens, note, at FROM charges WHERE key = ANY ($1::text[])";

/// Locks the chains of the budgets `$1::text[]` (those of due holds outside the chain locked
/// first: their root is already held, so this never waits).
pub(crate) const LOCK_MORE: &str = lock_chain!("$1::text[]");

/// The decision's time after a lock: `$1`, or the database's clock when `$1` is NULL.
pub(crate) const CLOCK: &str = concat!("SELECT ", clock!("$1"));

/// The sweep's lock: the chains of the first `$2` held reservations due at `$1` (or, when `$1`
/// is NULL, by the database's clock as the statement starts).
pub(crate) const LOCK_DUE_CHAINS: &str = lock_chain!(concat!(
    "ARRAY (SELECT budget_id FROM reservations WHERE state = 'held' AND expires_at <= ",
    clock!("$1"),
    " ORDER BY expires_at, id LIMIT $2)"
));

/// After [`LOCK_DUE_CHAINS`]: the first `$3` held reservations due at `$2` on the locked
/// budgets `$1` (every ancestor of a locked budget is locked too).
pub(crate) const READ_DUE: &str = concat!(
    "SELECT ",
    reservation_columns!(),
    " FROM reservations\n",
    "WHERE state = 'held' AND expires_at <= $2 AND budget_id = ANY ($1::text[])\n",
    "ORDER BY expires_at, id\n",
    "LIMIT $3"
);

/// Writes a decision's [`Changes`](tokenbudget_core::rules::Changes) in one statement (so it
/// can be pipelined with COMMIT: a statement that fails aborts the transaction, and COMMIT then
/// rolls back). Each part is a set of parallel arrays, empty when there is nothing to write:
///
/// - `$1..$7`: the new budget (its `chain` is its parent's with its own id in front);
///   `$8..$12`: budget updates;
/// - `$13..$21`: the new reservation (its `root` from its budget's chain); `$22..$25` and
///   `$31`: reservation updates;
/// - `$32..$36`: the new charge;
/// - `$37..$40`: the new budget's unit, period, window start and closed flag; `$41..$42`:
///   the updated budgets' window start and closed flag; `$43`: the new reservation's model;
/// - `$26..$30`: events, inserted in array order, so `seq` follows the decision's order (each
///   stamped with this transaction's id by the column's default).
pub(crate) const WRITE_CHANGES: &str = "\
WITH new_budget AS (
    INSERT INTO budgets (id, parent, chain, limit_tokens, used, reserved, held, created_at,
                         unit, period, window_start, closed)
    SELECT n.id, n.parent,
           n.id || coalesce((SELECT p.chain FROM budgets AS p WHERE p.id = n.parent), '{}'),
           n.limit_tokens, n.used, n.reserved, n.held, n.created_at, n.unit, n.period,
           n.window_start, n.closed
    FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[],
                $6::bigint[], $7::bigint[], $37::text[], $38::text[], $39::bigint[],
                $40::boolean[])
        AS n (id, parent, limit_tokens, used, reserved, held, created_at, unit, period,
              window_start, closed)
), budget_updates AS (
    UPDATE budgets AS b
    SET limit_tokens = u.limit_tokens, used = u.used, reserved = u.reserved, held = u.held,
        window_start = u.window_start, closed = u.closed
    FROM unnest($8::text[], $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[],
                $41::bigint[], $42::boolean[])
        AS u (id, limit_tokens, used, reserved, held, window_start, closed)
    WHERE b.id = u.id
), new_reservation AS (
    INSERT INTO reservations (id, budget_id, root, tokens, state, created_at, expires_at,
                              idempotency_key, actual, settled_at, model)
    SELECT n.id, n.budget_id,
           (SELECT b.chain[cardinality(b.chain)] FROM budgets AS b WHERE b.id = n.budget_id),
           n.tokens, n.state, n.created_at, n.expires_at, n.idempotency_key, n.actual,
           n.settled_at, n.model
    FROM unnest($13::uuid[], $14::text[], $15::bigint[], $16::text[], $17::bigint[],
                $18::bigint[], $19::text[], $20::bigint[], $21::bigint[], $43::text[])
        AS n (id, budget_id, tokens, state, created_at, expires_at, idempotency_key, actual,
              settled_at, model)
), reservation_updates AS (
    UPDATE reservations AS r
    SET state = u.state, actual = u.actual, settled_at = u.settled_at, expires_at = u.expires_at
    FROM unnest($22::uuid[], $23::text[], $24::bigint[], $25::bigint[], $31::bigint[])
        AS u (id, state, actual, settled_at, expires_at)
    WHERE r.id = u.id
), new_charge AS (
    INSERT INTO charges (key, budget_id, tokens, note, at)
    SELECT * FROM unnest($32::text[], $33::text[], $34::bigint[], $35::text[], $36::bigint[])
)
INSERT INTO events (budget_id, at, type, reservation_id, kind)
SELECT budget_id, at, type, reservation_id, kind
FROM unnest($26::text[], $27::bigint[], $28::text[], $29::uuid[], $30::jsonb[])
    WITH ORDINALITY AS e (budget_id, at, type, reservation_id, kind, ord)
ORDER BY ord";

/// The charge holding key `$1`, read after the lock (charge) or on its own.
pub(crate) const CHARGE: &str =
    "SELECT key, budget_id, tokens, note, at FROM charges WHERE key = $1";

/// Budget `$1` (its columns first) with every held reservation due at `$2` (NULL: the
/// database's clock) made on it or a descendant (the reservation's columns next, NULL when
/// none): its live status, from one statement and so one snapshot. No row for an unknown
/// budget.
pub(crate) const STATUS: &str = concat!(
    "WITH clock AS MATERIALIZED (SELECT ",
    clock!("$2"),
    " AS now)\n",
    "SELECT b.id, b.parent, b.limit_tokens, b.used, b.reserved, b.held, b.created_at, b.unit,\n",
    "       b.period, b.window_start, b.closed, r.*, clock.now\n",
    "FROM budgets AS b CROSS JOIN clock LEFT JOIN LATERAL (\n",
    "    SELECT ",
    reservation_columns!(),
    " FROM reservations\n",
    "    WHERE state = 'held' AND root = b.chain[cardinality(b.chain)] AND expires_at <= clock.now\n",
    "      AND EXISTS (SELECT FROM budgets AS o\n",
    "                  WHERE o.id = reservations.budget_id AND b.id = ANY (o.chain))\n",
    ") AS r ON true\n",
    "WHERE b.id = $1"
);

/// Every budget (its columns first) with each held reservation due at `$1` (NULL: the
/// database's clock) made on it (the reservation's columns next, NULL when none), by budget
/// id: every live status, from one statement and so one snapshot.
pub(crate) const STATUSES: &str = concat!(
    "WITH clock AS MATERIALIZED (SELECT ",
    clock!("$1"),
    " AS now)\n",
    "SELECT b.id, b.parent, b.limit_tokens, b.used, b.reserved, b.held, b.created_at, b.unit,\n",
    "       b.period, b.window_start, b.closed, r.*, clock.now\n",
    "FROM budgets AS b CROSS JOIN clock LEFT JOIN LATERAL (\n",
    "    SELECT ",
    reservation_columns!(),
    " FROM reservations\n",
    "    WHERE state = 'held' AND budget_id = b.id AND expires_at <= clock.now\n",
    ") AS r ON true\n",
    "ORDER BY b.id"
);

/// One budget.
pub(crate) const BUDGET: &str =
    concat!("SELECT ", budget_columns!(), " FROM budgets WHERE id = $1");

/// Every budget, by id.
pub(crate) const LIST_BUDGETS: &str =
    concat!("SELECT ", budget_columns!(), " FROM budgets ORDER BY id");

/// Reservations made on budget `$1` or below it (every budget when NULL), in state `$2` as seen
/// at `$3` (NULL: the database's clock; a held one past its expiry is expired; any state when NULL), with an id after `$4`,
/// at most `$5`, by id.
pub(crate) const RESERVATIONS: &str = concat!(
    "WITH clock AS MATERIALIZED (SELECT ",
    clock!("$3"),
    " AS now)\n",
    "SELECT ",
    reservation_columns!(),
    " FROM reservations, clock\n",
    "WHERE ($1::text IS NULL OR budget_id IN (SELECT id FROM budgets WHERE $1::text = ANY (chain)))\n",
    "  AND ($2::text IS NULL\n",
    "       OR ($2 = 'held' AND state = 'held' AND expires_at > clock.now)\n",
    "       OR ($2 = 'expired' AND (state = 'expired' OR (state = 'held' AND expires_at <= clock.now)))\n",
    "       OR ($2 NOT IN ('held', 'expired') AND state = $2))\n",
    "  AND ($4::uuid IS NULL OR id > $4)\n",
    "ORDER BY id LIMIT $5"
);

/// One reservation.
pub(crate) const RESERVATION: &str = concat!(
    "SELECT ",
    reservation_columns!(),
    " FROM reservations WHERE id = $1"
);

/// The log after `$1`, at most `$2` events.
pub(crate) const EVENTS: &str =
    "SELECT seq, budget_id, at, kind FROM events WHERE seq > $1 ORDER BY seq LIMIT $2";

/// The whole log after the cursor (`$1` transaction id, `$2` seq), at most `$3` events, in
/// (transaction id, seq) order, and only events of transactions below the oldest one still
/// running (`pg_snapshot_xmin`): every transaction below it has ended, and any later writer
/// gets a larger id, so no event can ever appear behind a cursor built from these rows.
/// The transaction id in the last column.
pub(crate) const LOG_AFTER: &str = "\
SELECT seq, budget_id, at, kind, xid::text::bigint FROM events
WHERE (xid, seq) > ($1::bigint::text::xid8, $2::bigint)
  AND xid < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY xid, seq
LIMIT $3";

/// The newest events of the types in `$1`, before seq `$2`, at most `$3`, newest first: one
/// probe of `events_by_type` per type (each reading at most `$3` rows), merged.
pub(crate) const RECENT_EVENTS: &str = "\
SELECT e.seq, e.budget_id, e.at, e.kind
FROM (SELECT DISTINCT unnest($1::text[]) AS type) AS t
CROSS JOIN LATERAL (
    SELECT seq, budget_id, at, kind FROM events
    WHERE type = t.type AND seq < $2
    ORDER BY seq DESC
    LIMIT $3
) AS e
ORDER BY e.seq DESC
LIMIT $3";

/// Budget `$3`'s events after `$1`, at most `$2`.
pub(crate) const EVENTS_OF_BUDGET: &str = "SELECT seq, budget_id, at, kind FROM events \
     WHERE budget_id = $3 AND seq > $1 ORDER BY seq LIMIT $2";

/// The check a pooled connection passes before reuse: it fails (division by zero) inside a
/// transaction block, where `now()` is the transaction's start and not this statement's, and
/// fails outright in an aborted one. A connection still inside a transaction is discarded.
///
/// Only valid as a simple query (as deadpool's recycle sends it): in the extended protocol the
/// Execute message moves `statement_timestamp()` past the implicit transaction's start.
pub(crate) const RECYCLE_CHECK: &str = "SELECT 1 / (now() = statement_timestamp())::int";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_lock_takes_its_trees_then_whole_chains_roots_first_in_one_statement() {
        for lock in [LOCK_BATCH, LOCK_DUE_CHAINS, LOCK_MORE] {
            assert!(
                lock.starts_with("WITH seeds AS MATERIALIZED (SELECT "),
                "{lock}"
            );
            assert!(
                lock.contains("SELECT count(pg_advisory_xact_lock(k)) AS n FROM (")
                    && lock.contains("ORDER BY k OFFSET 0"),
                "{lock}"
            );
            assert!(
                lock.contains(concat!("\nSELECT ", budget_columns!(), " FROM budgets, trees\n\
                     WHERE id = ANY (ARRAY (SELECT unnest(s.chain) FROM budgets AS s, seeds WHERE s.id = ANY (seeds.ids)))\n")),
                "{lock}"
            );
            assert!(
                lock.ends_with("\nORDER BY parent IS NULL DESC, id\nFOR UPDATE OF budgets"),
                "{lock}"
            );
            assert_eq!(lock.matches("FOR UPDATE").count(), 1, "{lock}");
            assert_eq!(lock.matches("pg_advisory").count(), 1, "{lock}");
        }
        // The reads after the lock never lock anything themselves.
        for read in [READ_BATCH, READ_DUE, CLOCK] {
            assert!(!read.contains("FOR "), "{read}");
        }
    }
}
