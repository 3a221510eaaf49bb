//! Versioned migrations, applied once when a store is opened.
//!
//! Applied versions are rows of `tokenbudget_schema`. Migrating runs under `BEGIN IMMEDIATE`,
//! so processes opening the same database at once apply each migration exactly once: the
//! first migrates, the others wait for its write lock and then find nothing left to do.

use sqlx::{Connection, SqliteConnection};

use crate::error::{Result, SqliteError};

/// One schema version.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Migration {
    /// Versions increase by one from 1.
    pub version: i64,
    pub description: &'static str,
    pub sql: &'static str,
}

/// Every migration this build knows, oldest first.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "budgets, reservations, events",
        sql: include_str!("../migrations/0001_init.sql"),
    },
    Migration {
        version: 2,
        description: "reservations know their tree's root; charges",
        sql: include_str!("../migrations/0002_tree_holds_and_charges.sql"),
    },
    Migration {
        version: 3,
        description: "usage ledger: records and import checkpoints",
        sql: include_str!("../migrations/0003_ledger.sql"),
    },
    Migration {
        version: 4,
        description: "periodic and usd budgets, closed budgets, reservation models",
        sql: include_str!("../migrations/0004_periods_units_admin.sql"),
    },
    Migration {
        version: 5,
        description: "usage ledger: estimated records and the budget charged",
        sql: include_str!("../migrations/0005_ledger_charge.sql"),
    },
    Migration {
        version: 6,
        description: "usage ledger: a covering index for aggregates",
        sql: include_str!("../migrations/0006_ledger_aggregate.sql"),
    },
    Migration {
        version: 7,
        description: "events: refusals and clamps, read by type",
        sql: include_str!("../migrations/0007_events_by_type.sql"),
    },
    Migration {
        version: 8,
        description: "ledger: rule-6 shadowing stored when writing",
        sql: include_str!("../migrations/0008_ledger_shadowed.sql"),
    },
];

/// The newest schema version this build writes.
pub const SCHEMA_VERSION: i64 = 8;

const VERSION_TABLE: &str = "CREATE TABLE IF NOT EXISTS tokenbudget_schema (
    version     INTEGER PRIMARY KEY NOT NULL,
    description TEXT    NOT NULL,
    applied_at  INTEGER NOT NULL
)";

/// Brings the database to the newest version in `migrations`; returns the versions applied.
///
/// A database at a version newer than any in `migrations` is [`SqliteError::SchemaTooNew`],
/// and nothing is changed.
pub(crate) async fn migrate(
    conn: &mut SqliteConnection,
    migrations: &[Migration],
) -> Result<Vec<i64>> {
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    sqlx::query(VERSION_TABLE).execute(&mut *tx).await?;
    let current: i64 =
        sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM tokenbudget_schema")
            .fetch_one(&mut *tx)
            .await?;
    let supported = migrations.last().map_or(0, |m| m.version);
    if current > supported {
        return Err(SqliteError::SchemaTooNew {
            found: current,
            supported,
        });
    }
    let mut applied = Vec::new();
    for migration in migrations {
        if migration.version <= current {
            continue;
        }
        sqlx::query(migration.sql)
            .persistent(false)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO tokenbudget_schema (version, description, applied_at)
             VALUES (?1, ?2, CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER))",
        )
        .bind(migration.version)
        .bind(migration.description)
        .execute(&mut *tx)
        .await?;
        applied.push(migration.version);
    }
    tx.commit().await?;
    Ok(applied)
}

/// The version recorded in the database (0 when never migrated).
pub(crate) async fn version(conn: &mut SqliteConnection) -> Result<i64> {
    let exists: Option<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'tokenbudget_schema'",
    )
    .fetch_optional(&mut *conn)
    .await?;
    if exists.is_none() {
        return Ok(0);
    }
    Ok(
        sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM tokenbudget_schema")
            .fetch_one(&mut *conn)
            .await?,
    )
}

#[cfg(test)]
mod tests {
    use sqlx::ConnectOptions;

    use super::*;

    async fn memory() -> SqliteConnection {
        sqlx::sqlite::SqliteConnectOptions::new()
            .in_memory(true)
            .connect()
            .await
            .unwrap()
    }

    #[test]
    fn versions_count_up_from_one_and_match_the_constant() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1);
        }
        assert_eq!(MIGRATIONS.last().unwrap().version, SCHEMA_VERSION);
    }

    #[tokio::test]
    async fn an_older_database_gets_only_the_missing_migrations() {
        let mut conn = memory().await;
        assert_eq!(migrate(&mut conn, &MIGRATIONS[..1]).await.unwrap(), [1]);
        sqlx::query("INSERT INTO budgets VALUES ('wf', NULL, 10, 0, 0, 0, 0)")
            .execute(&mut conn)
            .await
            .unwrap();

        let v3 = Migration {
            version: 3,
            description: "test: a column",
            sql: "ALTER TABLE budgets ADD COLUMN note TEXT NOT NULL DEFAULT 'v3'",
        };
        let newer = [MIGRATIONS[0], MIGRATIONS[1], v3];
        assert_eq!(migrate(&mut conn, &newer).await.unwrap(), [2, 3]);
        assert_eq!(migrate(&mut conn, &newer).await.unwrap(), Vec::<i64>::new());
        assert_eq!(version(&mut conn).await.unwrap(), 3);
        let note: String = sqlx::query_scalar("SELECT note FROM budgets WHERE id = 'wf'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(note, "v3");

        // This build's list now looks old to the database: a clear error, nothing changed.
        let err = migrate(&mut conn, &MIGRATIONS[..2]).await.unwrap_err();
        assert!(matches!(
            err,
            SqliteError::SchemaTooNew {
                found: 3,
                supported: 2
            }
        ));
        assert!(err
            .to_string()
            .contains("newer than the newest this build knows"));
        assert_eq!(version(&mut conn).await.unwrap(), 3);
    }

    /// id, budget_id, tokens, state, created_at, expires_at, idempotency_key.
    type ReservationRow = (String, String, i64, String, i64, i64, Option<String>);

    #[tokio::test]
    async fn version_2_gives_every_reservation_its_root_and_keeps_every_row() {
        let mut conn = memory().await;
        assert_eq!(migrate(&mut conn, &MIGRATIONS[..1]).await.unwrap(), [1]);
        // A v1 database: two trees, three levels in one, reservations in every state.
        sqlx::query(
            "INSERT INTO budgets VALUES ('wf', NULL, 1000, 5, 30, 2, 1), \
                 ('wf:a', 'wf', 500, 5, 20, 1, 2), ('wf:a:x', 'wf:a', 100, 0, 20, 1, 3), \
                 ('wf:b', 'wf', 500, 0, 10, 1, 4), ('other', NULL, 10, 0, 0, 0, 5); \
             INSERT INTO reservations VALUES \
                 ('r1', 'wf:a:x', 20, 'held', 10, 99, 'k1', NULL, NULL), \
                 ('r2', 'wf:b', 10, 'held', 11, 98, NULL, NULL, NULL), \
                 ('r3', 'wf:a', 7, 'committed', 12, 97, NULL, 5, 13), \
                 ('r4', 'other', 3, 'released', 14, 96, 'k4', NULL, 15);",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        let before: Vec<ReservationRow> = sqlx::query_as(
            "SELECT id, budget_id, tokens, state, created_at, expires_at, idempotency_key \
                 FROM reservations ORDER BY id",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();

        assert_eq!(migrate(&mut conn, &MIGRATIONS[..2]).await.unwrap(), [2]);
        let after: Vec<ReservationRow> = sqlx::query_as(
            "SELECT id, budget_id, tokens, state, created_at, expires_at, idempotency_key \
                 FROM reservations ORDER BY id",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        assert_eq!(after, before, "every row kept as it was");
        let roots: Vec<(String, String)> =
            sqlx::query_as("SELECT id, root FROM reservations ORDER BY id")
                .fetch_all(&mut conn)
                .await
                .unwrap();
        let want = [("r1", "wf"), ("r2", "wf"), ("r3", "wf"), ("r4", "other")];
        assert_eq!(roots, want.map(|(r, root)| (r.to_owned(), root.to_owned())),);
        // The indexes came back with the table: a duplicate key is still refused.
        let dup = sqlx::query(
            "INSERT INTO reservations (id, budget_id, root, tokens, state, created_at, \
             expires_at, idempotency_key) VALUES ('r5', 'wf', 'wf', 1, 'held', 0, 0, 'k1')",
        )
        .execute(&mut conn)
        .await;
        assert!(dup.is_err(), "the idempotency key index is gone");
        let indexes: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'reservations' \
             AND name NOT LIKE 'sqlite_%' ORDER BY name",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        assert_eq!(
            indexes,
            [
                "reservations_held_by_expiry",
                "reservations_held_by_root",
                "reservations_idempotency_key"
            ]
        );
        let charges: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM charges")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(charges, 0);
    }

    #[tokio::test]
    async fn a_reservation_whose_budget_has_no_root_stops_the_migration() {
        let mut conn = memory().await;
        migrate(&mut conn, &MIGRATIONS[..1]).await.unwrap();
        // Corrupt: a two-budget cycle (only possible with foreign keys off), no root.
        sqlx::query(
            "PRAGMA foreign_keys = OFF; \
             INSERT INTO budgets VALUES ('a', 'b', 10, 0, 1, 1, 0), ('b', 'a', 10, 0, 1, 1, 0); \
             INSERT INTO reservations VALUES ('r1', 'a', 1, 'held', 0, 0, NULL, NULL, NULL);",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        assert!(migrate(&mut conn, MIGRATIONS).await.is_err());
        assert_eq!(version(&mut conn).await.unwrap(), 1, "nothing applied");
        let kept: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM reservations")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(kept, 1);
    }

    #[tokio::test]
    async fn a_failing_migration_leaves_the_database_as_it_was() {
        let mut conn = memory().await;
        let broken = Migration {
            version: 3,
            description: "test: broken",
            sql: "CREATE TABLE extra (x INTEGER); SELECT * FROM no_such_table;",
        };
        assert!(migrate(&mut conn, &[MIGRATIONS[0], MIGRATIONS[1], broken])
            .await
            .is_err());
        assert_eq!(version(&mut conn).await.unwrap(), 0);
        let tables: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'")
                .fetch_one(&mut conn)
                .await
                .unwrap();
        assert_eq!(tables, 0);
    }
}
