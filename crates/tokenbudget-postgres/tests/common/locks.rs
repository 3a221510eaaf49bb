//! Row locks held from another session, and who waits for them.

/// Holds budget `id`'s row lock from another session until the returned sender is dropped.
pub async fn hold_row_lock(url: &str, schema: &str, id: &str) -> tokio::sync::oneshot::Sender<()> {
    let (locked_tx, locked_rx) = tokio::sync::oneshot::channel();
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let (url, schema, id) = (url.to_owned(), schema.to_owned(), id.to_owned());
    tokio::spawn(async move {
        let mut admin = super::admin(&url).await;
        let tx = admin.transaction().await.unwrap();
        tx.execute(
            &format!("SELECT 1 FROM \"{schema}\".budgets WHERE id = $1 FOR UPDATE"),
            &[&id],
        )
        .await
        .unwrap();
        locked_tx.send(()).unwrap();
        let _ = release_rx.await;
        tx.rollback().await.unwrap();
    });
    locked_rx.await.unwrap();
    release_tx
}

/// How many sessions named `application_name` are waiting for a lock now.
pub async fn lock_waiters(admin: &tokio_postgres::Client, application_name: &str) -> i64 {
    admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 \
             AND wait_event_type = 'Lock'",
            &[&application_name],
        )
        .await
        .unwrap()
        .get(0)
}
