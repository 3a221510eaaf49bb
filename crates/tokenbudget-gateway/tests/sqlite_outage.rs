//! The SQLite store becomes unavailable: another connection (a backup tool, a stuck
//! process) holds the database's write lock. Admission and settlement give up within
//! `timeouts.store`; `closed` answers 503 and forwards nothing, `open` forwards and
//! journals, and the journal lands exactly once when the lock is released.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{eventually, journal_text, request, start_with, Harness};
use sqlx::{Connection, Executor, SqliteConnection};
use tokenbudget::TokenBudget;
use tokenbudget_gateway::fake::Fake;
use tokenbudget_gateway::{MemoryKeyStore, OnStoreError, Settings};

struct World {
    _dir: tempfile::TempDir,
    db: std::path::PathBuf,
    journal: std::path::PathBuf,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        World {
            db: dir.path().join("tb.db"),
            journal: dir.path().join("gw.journal"),
            _dir: dir,
        }
    }

    async fn gateway(&self, tweak: impl FnOnce(&mut Settings)) -> Harness {
        let budgets = TokenBudget::open(&format!("sqlite://{}", self.db.display()))
            .await
            .unwrap();
        budgets.create_workflow("team", 1_000_000).await.unwrap();
        let keys = Arc::new(MemoryKeyStore::default());
        let journal = self.journal.clone();
        start_with(
            budgets,
            keys.clone(),
            keys,
            Arc::new(Fake::default()),
            |s| {
                s.timeouts.store = Duration::from_secs(1);
                s.journal_retry = Duration::from_millis(100);
                s.journal = Some(journal);
                tweak(s);
            },
        )
        .await
    }

    /// A second connection holding the write lock until it is dropped.
    async fn lock(&self) -> SqliteConnection {
        let mut conn = SqliteConnection::connect(&format!("sqlite://{}", self.db.display()))
            .await
            .unwrap();
        conn.execute("BEGIN IMMEDIATE").await.unwrap();
        conn
    }
}

async fn status_of(h: &Harness, body: &serde_json::Value) -> u16 {
    let response = h.messages(body).send().await.unwrap();
    let status = response.status().as_u16();
    response.text().await.unwrap();
    status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_answers_503_within_the_store_timeout_while_the_database_is_locked() {
    let w = World::new();
    let h = w.gateway(|_| {}).await;
    assert_eq!(status_of(&h, &request("up", 100, false)).await, 200);
    h.settled().await;
    let forwarded = h.fake.received().len();

    let mut lock = w.lock().await;
    let started = std::time::Instant::now();
    assert_eq!(status_of(&h, &request("locked", 100, true)).await, 503);
    // Bounded by `timeouts.store` (1 s) plus the store's own retry step, not a hang.
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(h.fake.received().len(), forwarded, "nothing forwarded");

    lock.execute("ROLLBACK").await.unwrap();
    drop(lock);
    assert_eq!(status_of(&h, &request("back", 100, false)).await, 200);
    h.settled().await;
    // The reserve given up on landed once the lock was free; its journaled rollback
    // releases it (instead of holding room until it expires).
    eventually("the journal is replayed", async || {
        h.gateway.journal_depth() == 0
    })
    .await;
    let s = h.status("team").await;
    assert_eq!((s.used, s.held), (2 * 30, 0));
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_forwards_journals_and_lands_exactly_once_when_the_lock_is_released() {
    let w = World::new();
    let h = w.gateway(|s| s.on_store_error = OnStoreError::Open).await;
    assert_eq!(status_of(&h, &request("up", 100, false)).await, 200);
    h.settled().await;

    let mut lock = w.lock().await;
    for n in 0..3 {
        let body = request(&format!("locked {n}"), 100, n % 2 == 0);
        assert_eq!(status_of(&h, &body).await, 200);
    }
    h.settled().await;
    // Each usage kept (fsynced) as a charge, and each reserve given up on as a rollback.
    // (A replay attempt moves the file aside as `gw.journal.<n>.pending`: read them all.)
    let lines = journal_text(w.journal.parent().unwrap());
    assert_eq!(lines.matches(r#""op":"charge""#).count(), 3, "{lines}");
    assert_eq!(lines.matches(r#""op":"rollback""#).count(), 3, "{lines}");
    assert_eq!(h.gateway.journal_depth(), 6);

    lock.execute("ROLLBACK").await.unwrap();
    drop(lock);
    eventually("the journal is replayed into the store", async || {
        h.gateway.journal_depth() == 0
    })
    .await;
    let s = h.status("team").await;
    assert_eq!((s.used, s.held), (4 * 30, 0));
    assert_eq!(
        h.charges("team").await,
        3,
        "each forwarded request charged once"
    );
    h.shutdown().await;
}
