//! Versioned migrations, applied once at open under a transaction-scoped advisory lock, so any
//! number of instances starting at once apply each migration exactly once.

use tokio_postgres::Client;

use crate::error::PgError;

/// The migrations, in order. A migration is never edited once released: add a new one.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "initial", include_str!("../migrations/0001_initial.sql")),
    (
        2,
        "trees_and_log_order",
        include_str!("../migrations/0002_trees_and_log_order.sql"),
    ),
    (
        3,
        "usage ledger",
        include_str!("../migrations/0003_ledger.sql"),
    ),
    (
        4,
        "periods_units_admin",
        include_str!("../migrations/0004_periods_units_admin.sql"),
    ),
    (
        5,
        "ledger_charge",
        include_str!("../migrations/0005_ledger_charge.sql"),
    ),
    (
        6,
        "ledger_aggregate",
        include_str!("../migrations/0006_ledger_aggregate.sql"),
    ),
    (
        7,
        "events_by_type",
        include_str!("../migrations/0007_events_by_type.sql"),
    ),
    (
        8,
        "ledger_shadowed",
        include_str!("../migrations/0008_ledger_shadowed.sql"),
    ),
];

/// The newest schema version this build knows.
pub(crate) const LATEST: i32 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// The first key of the advisory lock (`'tkbg'`); the second is a hash of the schema name, so
/// instances on different schemas do not wait for each other.
const LOCK_CLASS: i32 = 0x746b_6267;

/// Creates `schema` if missing and applies every migration it lacks, in one transaction.
///
/// Returns the schema version found before migrating.
pub(crate) async fn migrate(client: &mut Client, schema: &str) -> Result<i32, PgError> {
    let tx = client.transaction().await?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext($2))",
        &[&LOCK_CLASS, &schema],
    )
    .await?;
    // `schema` was validated as [a-z0-9_]+, so quoting it is enough.
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS \"{schema}\";
         SET LOCAL search_path TO \"{schema}\";
         CREATE TABLE IF NOT EXISTS tokenbudget_migrations (
             version    integer     PRIMARY KEY,
             name       text        NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         );"
    ))
    .await?;
    let found: i32 = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM tokenbudget_migrations",
            &[],
        )
        .await?
        .get(0);
    if found > LATEST {
        return Err(PgError::SchemaTooNew {
            found,
            supported: LATEST,
        });
    }
    for (version, name, sql) in MIGRATIONS.iter().filter(|(v, ..)| *v > found) {
        tracing::info!(schema, version, name, "applying tokenbudget migration");
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO tokenbudget_migrations (version, name) VALUES ($1, $2)",
            &[version, name],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(found)
}
