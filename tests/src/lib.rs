//! Helpers shared by the cross-crate integration tests in `tests/tests/`.

use std::sync::atomic::{AtomicU64, Ordering};

/// The Postgres URL for tests: `TOKENBUDGET_TEST_DATABASE_URL`, else
/// `TOKENBUDGET_DATABASE_URL`, else the local default.
pub fn postgres_url() -> String {
    std::env::var("TOKENBUDGET_TEST_DATABASE_URL")
        .or_else(|_| std::env::var("TOKENBUDGET_DATABASE_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// The Postgres URL when a server answers there. Otherwise: under `CI=true` a panic (a test
/// that cannot reach its database fails), elsewhere `None` with a loud note (the test skips).
pub fn postgres_url_or_skip() -> Option<String> {
    let url = postgres_url();
    let reachable = std::process::Command::new("pg_isready")
        .args(["-d", &url])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if reachable {
        return Some(url);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("Postgres is not reachable at {url} and CI=true: failing rather than skipping");
    }
    eprintln!("SKIPPED: Postgres is not reachable at {url} (set CI=true to make this a failure)");
    None
}

/// A schema name no other test run uses.
pub fn unique_schema(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "tbx_{prefix}_{}_{}_{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Drops a test schema and everything in it.
pub async fn drop_schema(schema: &str) {
    let (client, connection) = tokio_postgres::connect(&postgres_url(), tokio_postgres::NoTls)
        .await
        .expect("connect to drop the test schema");
    let task = tokio::spawn(connection);
    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .await
        .expect("drop the test schema");
    drop(client);
    let _ = task.await;
}
