//! SQLite-specific behaviour: lock pressure, retries past the busy timeout, bad input, opening
//! and migrating, in-memory databases, cancelled operations.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use sqlx::{ConnectOptions, Connection, SqliteConnection};
use tokenbudget_core::rules::{CommitCommand, ReserveCommand, RollbackCommand};
use tokenbudget_core::testkit::{check_replay_matches_store, LogCheck};
use tokenbudget_core::{
    BudgetId, BudgetStore, Error, IdempotencyKey, NewBudget, ReservationId, ReserveOptions,
    Timestamp, Tracker,
};
use tokenbudget_sqlite::{Config, SqliteStore, SCHEMA_VERSION};

const T0: Timestamp = Timestamp::from_micros(1_735_689_600_000_000);

fn temp_db() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    (dir, path)
}

fn url(path: &Path) -> String {
    path.to_str().unwrap().to_owned()
}

fn id(s: &str) -> BudgetId {
    BudgetId::new(s).unwrap()
}

fn rid(n: u128) -> ReservationId {
    ReservationId::from_uuid(uuid::Uuid::from_u128(n))
}

async fn raw(path: &Path) -> SqliteConnection {
    sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .connect()
        .await
        .unwrap()
}

/// Rows in budgets, reservations and events: a rejected command changes none of them.
async fn counts(path: &Path) -> [i64; 3] {
    let mut conn = raw(path).await;
    let mut out = [0; 3];
    for (slot, sql) in out.iter_mut().zip([
        "SELECT COUNT(*) FROM budgets",
        "SELECT COUNT(*) FROM reservations",
        "SELECT COUNT(*) FROM events",
    ]) {
        *slot = sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap();
    }
    conn.close().await.unwrap();
    out
}

fn reserve_cmd(n: u128, budget: &str, tokens: u64) -> ReserveCommand {
    ReserveCommand {
        reservation_id: rid(n),
        budget_id: id(budget),
        tokens,
        timeout: Duration::from_secs(60),
        idempotency_key: None,
        model: None,
        asked: None,
    }
}

/// Reserve, then commit part or roll back, `rounds` times on `budget`; every call must succeed
/// (a refusal is an answer). Returns (grants, refusals).
async fn churn(tracker: Tracker, budget: &'static str, rounds: usize, seed: u64) -> (usize, usize) {
    let (mut grants, mut refusals) = (0, 0);
    let mut x = seed | 1;
    for _ in 0..rounds {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let tokens = 1 + x % 50;
        let outcome = tracker
            .reserve(budget, tokens, ReserveOptions::new())
            .await
            .unwrap_or_else(|e| panic!("reserve reached the caller with an error: {e}"));
        let Some(grant) = outcome.granted() else {
            refusals += 1;
            continue;
        };
        grants += 1;
        if x % 3 == 0 {
            tracker.rollback(grant.reservation.id).await.unwrap();
        } else {
            tracker
                .commit(grant.reservation.id, tokens / 2)
                .await
                .unwrap();
        }
    }
    (grants, refusals)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_eight_tasks_on_one_hot_budget_never_see_busy() {
    let (_dir, path) = temp_db();
    let store: Arc<SqliteStore> = Arc::new(SqliteStore::open(&url(&path)).await.unwrap());
    let tracker = Tracker::new(store.clone());
    tracker.create_workflow("hot", 8_000).await.unwrap();
    let tasks: Vec<_> = (0..48)
        .map(|task| tokio::spawn(churn(tracker.clone(), "hot", 25, task * 7919 + 1)))
        .collect();
    let (mut grants, mut refusals) = (0, 0);
    for task in tasks {
        let (g, r) = task.await.unwrap();
        grants += g;
        refusals += r;
    }
    assert!(
        grants > 100 && refusals > 0,
        "grants {grants}, refusals {refusals}"
    );
    let budgets = check_replay_matches_store(store.as_ref(), LogCheck { strict_limit: true })
        .await
        .unwrap();
    assert_eq!((budgets[0].reserved, budgets[0].held), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_contending_past_a_tiny_busy_timeout_retry_instead_of_failing() {
    // Three stores on one file behave like three processes. Without the writer queue and with
    // a 1 ms busy timeout, SQLITE_BUSY is routine: the store must retry whole transactions.
    let (_dir, path) = temp_db();
    let config = Config::new(url(&path))
        .with_writer_queue(false)
        .with_busy_timeout(Duration::from_millis(1));
    let mut stores = Vec::new();
    for _ in 0..3 {
        stores.push(Arc::new(
            SqliteStore::open_with(config.clone()).await.unwrap(),
        ));
    }
    Tracker::new(stores[0].clone())
        .create_workflow("hot", 6_000)
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for (s, store) in stores.iter().enumerate() {
        let tracker = Tracker::new(store.clone());
        for task in 0..12 {
            let seed = (s * 100 + task) as u64 * 104_729 + 3;
            tasks.push(tokio::spawn(churn(tracker.clone(), "hot", 15, seed)));
        }
    }
    let mut grants = 0;
    for task in tasks {
        grants += task.await.unwrap().0;
    }
    assert!(grants > 50, "grants {grants}");
    check_replay_matches_store(stores[0].as_ref(), LogCheck { strict_limit: true })
        .await
        .unwrap();
}

/// Holds SQLite's write lock from a plain connection until `release` fires (or is dropped).
/// The returned flag turns true just before the lock is let go, so whatever needed the lock
/// and got it must find it true, however fast or slow the machine.
async fn hold_write_lock(
    path: &Path,
    release: tokio::sync::oneshot::Receiver<()>,
) -> (tokio::task::JoinHandle<()>, Arc<AtomicBool>) {
    let mut conn = raw(path).await;
    let (locked_tx, locked_rx) = tokio::sync::oneshot::channel();
    let released = Arc::new(AtomicBool::new(false));
    let flag = released.clone();
    let task = tokio::spawn(async move {
        let tx = conn.begin_with("BEGIN IMMEDIATE").await.unwrap();
        locked_tx.send(()).unwrap();
        let _ = release.await;
        flag.store(true, Ordering::SeqCst);
        tx.rollback().await.unwrap();
    });
    locked_rx.await.unwrap();
    (task, released)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_held_past_the_busy_timeout_is_waited_out_by_retrying() {
    let (_dir, path) = temp_db();
    let config = Config::new(url(&path)).with_busy_timeout(Duration::from_millis(10));
    let store = SqliteStore::open_with(config).await.unwrap();
    store
        .create_budget(NewBudget::workflow(id("wf"), 100), T0)
        .await
        .unwrap();

    let (release, on_release) = tokio::sync::oneshot::channel();
    let (holder, released) = hold_write_lock(&path, on_release).await;
    // Let go of the lock a while later (many busy timeouts: the store must retry, not fail);
    // how long is no assertion.
    let releaser = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let _ = release.send(());
    });
    let outcome = store.reserve(reserve_cmd(1, "wf", 10), T0).await.unwrap();
    assert!(outcome.granted().is_some());
    assert!(
        released.load(Ordering::SeqCst),
        "the reserve cannot have run while the lock was held"
    );
    releaser.await.unwrap();
    holder.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_held_past_the_retry_deadline_is_a_retryable_error_and_writes_nothing() {
    let (_dir, path) = temp_db();
    let config = Config::new(url(&path))
        .with_busy_timeout(Duration::from_millis(10))
        .with_retry_deadline(Duration::from_millis(200));
    let store = SqliteStore::open_with(config).await.unwrap();
    store
        .create_budget(NewBudget::workflow(id("wf"), 100), T0)
        .await
        .unwrap();
    let before = counts(&path).await;

    // Held until the reserve has given up, however long that takes.
    let (release, on_release) = tokio::sync::oneshot::channel();
    let (holder, _) = hold_write_lock(&path, on_release).await;
    let err = store
        .reserve(reserve_cmd(1, "wf", 10), T0)
        .await
        .unwrap_err();
    release.send(()).unwrap();
    assert!(err.is_retryable(), "{err}");
    assert!(
        matches!(&err, Error::Storage { backend: "sqlite", message, .. } if message.contains("locked")),
        "{err}"
    );
    holder.await.unwrap();
    assert_eq!(counts(&path).await, before);

    // The same operation succeeds once the lock is gone.
    let outcome = store.reserve(reserve_cmd(1, "wf", 10), T0).await.unwrap();
    assert!(outcome.granted().is_some());
}

#[tokio::test]
async fn bad_input_is_a_typed_error_and_writes_nothing() {
    let (_dir, path) = temp_db();
    let store = SqliteStore::open(&url(&path)).await.unwrap();
    store
        .create_budget(NewBudget::workflow(id("wf"), 100), T0)
        .await
        .unwrap();
    store
        .create_budget(NewBudget::child(id("wf:a"), id("wf"), 50), T0)
        .await
        .unwrap();
    let granted = store
        .reserve(
            ReserveCommand {
                idempotency_key: Some(IdempotencyKey::new("key-1").unwrap()),
                ..reserve_cmd(1, "wf:a", 10)
            },
            T0,
        )
        .await
        .unwrap();
    assert!(granted.granted().is_some());
    store
        .commit(
            CommitCommand {
                reservation_id: rid(1),
                actual: 5,
            },
            T0,
        )
        .await
        .unwrap();
    let before = counts(&path).await;

    let e = store
        .create_budget(NewBudget::workflow(id("zero"), 0), T0)
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::InvalidAmount { field: "limit", .. }),
        "{e}"
    );
    let e = store
        .create_budget(NewBudget::workflow(id("huge"), u64::MAX), T0)
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::InvalidAmount { field: "limit", .. }),
        "{e}"
    );
    let e = store
        .create_budget(NewBudget::workflow(id("wf"), 10), T0)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::BudgetExists { .. }), "{e}");
    let e = store
        .create_budget(NewBudget::child(id("x"), id("nope"), 10), T0)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::ParentNotFound { .. }), "{e}");

    let e = store
        .reserve(reserve_cmd(2, "wf", 0), T0)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::InvalidAmount {
                field: "tokens",
                ..
            }
        ),
        "{e}"
    );
    let e = store
        .reserve(reserve_cmd(2, "wf", u64::MAX), T0)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::InvalidAmount {
                field: "tokens",
                ..
            }
        ),
        "{e}"
    );
    let e = store
        .reserve(
            ReserveCommand {
                timeout: Duration::ZERO,
                ..reserve_cmd(2, "wf", 1)
            },
            T0,
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidTimeout { .. }), "{e}");
    let e = store
        .reserve(reserve_cmd(2, "missing", 1), T0)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::BudgetNotFound { id } if id.as_str() == "missing"),
        "{e}"
    );
    let e = store
        .reserve(
            ReserveCommand {
                idempotency_key: Some(IdempotencyKey::new("key-1").unwrap()),
                ..reserve_cmd(2, "wf:a", 11)
            },
            T0,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::IdempotencyConflict { existing, .. } if existing == rid(1)),
        "{e}"
    );

    let e = store
        .commit(
            CommitCommand {
                reservation_id: rid(1),
                actual: 6,
            },
            T0,
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::ReservationConflict { .. }), "{e}");
    let e = store
        .commit(
            CommitCommand {
                reservation_id: rid(1),
                actual: u64::MAX,
            },
            T0,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::InvalidAmount {
                field: "actual",
                ..
            }
        ),
        "{e}"
    );
    let e = store
        .commit(
            CommitCommand {
                reservation_id: rid(99),
                actual: 1,
            },
            T0,
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::ReservationNotFound { .. }), "{e}");
    let e = store
        .rollback(
            RollbackCommand {
                reservation_id: rid(1),
            },
            T0,
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::ReservationConflict { .. }), "{e}");
    assert!(!e.is_retryable() && e.is_rejection());

    assert_eq!(
        counts(&path).await,
        before,
        "a rejected command wrote something"
    );
}

#[tokio::test]
async fn a_new_file_is_created_at_the_current_schema_version() {
    let (_dir, path) = temp_db();
    let store = SqliteStore::open(&format!("sqlite://{}", url(&path)))
        .await
        .unwrap();
    assert_eq!(store.schema_version().await.unwrap(), SCHEMA_VERSION);
    drop(store);
    let mut conn = raw(&path).await;
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tokenbudget_schema")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(rows, SCHEMA_VERSION);
}

#[tokio::test]
async fn an_older_database_is_migrated_and_keeps_its_other_tables() {
    let (_dir, path) = temp_db();
    // Version 0: a database some application already uses, without our tables.
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true)
        .connect()
        .await
        .unwrap();
    sqlx::query("CREATE TABLE app_data (x INTEGER); INSERT INTO app_data VALUES (42);")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();

    let store = SqliteStore::open(&url(&path)).await.unwrap();
    assert_eq!(store.schema_version().await.unwrap(), SCHEMA_VERSION);
    store
        .create_budget(NewBudget::workflow(id("wf"), 10), T0)
        .await
        .unwrap();
    drop(store);
    let mut conn = raw(&path).await;
    let x: i64 = sqlx::query_scalar("SELECT x FROM app_data")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(x, 42);
}

#[tokio::test]
async fn a_version_1_database_keeps_its_data_and_its_expired_sibling_hold_no_longer_refuses() {
    use tokenbudget_core::EventKind;
    let (_dir, path) = temp_db();
    // A database as version 1 of this store left it: wf (1000) > wf:a, wf:b; r1 holds 800 on
    // wf:a, expiring at T0 + 1 s.
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true)
        .connect()
        .await
        .unwrap();
    sqlx::query(include_str!("../migrations/0001_init.sql"))
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query(
        "CREATE TABLE tokenbudget_schema (version INTEGER PRIMARY KEY NOT NULL, \
         description TEXT NOT NULL, applied_at INTEGER NOT NULL); \
         INSERT INTO tokenbudget_schema VALUES (1, 'budgets, reservations, events', 0);",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let t0 = T0.as_micros();
    let expires = t0 + 1_000_000;
    sqlx::query(
        "INSERT INTO budgets VALUES ('wf', NULL, 1000, 0, 800, 1, ?1), \
             ('wf:a', 'wf', 1000, 0, 800, 1, ?1), ('wf:b', 'wf', 1000, 0, 0, 0, ?1); \
         INSERT INTO reservations VALUES \
             ('00000000-0000-0000-0000-000000000001', 'wf:a', 800, 'held', ?1, ?2, NULL, NULL, NULL)",
    )
    .bind(t0)
    .bind(expires)
    .execute(&mut conn)
    .await
    .unwrap();
    let r1 = rid(1);
    let created = |parent: Option<&str>| EventKind::BudgetCreated {
        parent: parent.map(id),
        limit: 1000,
        unit: tokenbudget_core::Unit::Tokens,
        period: None,
    };
    let reserved = EventKind::TokensReserved {
        reservation_id: r1,
        origin: id("wf:a"),
        tokens: 800,
        expires_at: Timestamp::from_micros(expires),
    };
    for (budget, kind) in [
        ("wf", created(None)),
        ("wf:a", created(Some("wf"))),
        ("wf:b", created(Some("wf"))),
        ("wf:a", reserved.clone()),
        ("wf", reserved),
    ] {
        sqlx::query(
            "INSERT INTO events (budget_id, at, type, reservation_id, payload) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .bind(budget)
        .bind(t0)
        .bind(kind.type_name())
        .bind(kind.reservation_id().map(|r| r.to_string()))
        .bind(serde_json::to_string(&kind).unwrap())
        .execute(&mut conn)
        .await
        .unwrap();
    }
    conn.close().await.unwrap();

    let store = SqliteStore::open(&url(&path)).await.unwrap();
    assert_eq!(store.schema_version().await.unwrap(), SCHEMA_VERSION);
    let kept = store.reservation(r1).await.unwrap().unwrap();
    assert_eq!((kept.tokens, kept.expires_at.as_micros()), (800, expires));
    let now = Timestamp::from_micros(t0 + 2_000_000);
    // The live view already leaves the expired hold out; the stored one still has it.
    let wf = store.status(&id("wf"), now).await.unwrap().unwrap();
    assert_eq!((wf.reserved, wf.held, wf.available), (0, 0, 1000));
    let listed = store.statuses(now).await.unwrap();
    assert!(listed.iter().all(|s| s.reserved == 0), "{listed:?}");
    assert_eq!(
        store.budget(&id("wf")).await.unwrap().unwrap().reserved,
        800
    );
    // A reserve on the sibling releases it (found through the migrated root) and is granted.
    let granted = store
        .reserve(reserve_cmd(2, "wf:b", 500), now)
        .await
        .unwrap();
    assert!(granted.granted().is_some());
    let r1 = store.reservation(r1).await.unwrap().unwrap();
    assert_eq!(r1.state, tokenbudget_core::ReservationState::Expired);
    let budgets = check_replay_matches_store(&store, LogCheck { strict_limit: true })
        .await
        .unwrap();
    let wf = budgets.iter().find(|b| b.id.as_str() == "wf").unwrap();
    assert_eq!((wf.reserved, wf.held), (500, 1));
}

/// The database file the release before schema 4 wrote (see `testkit::check_v3_fixture_kept`
/// for how), migrated in place at open.
#[tokio::test]
async fn a_database_written_by_the_previous_release_migrates_keeping_everything() {
    let (_dir, path) = temp_db();
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/v3.db"),
        &path,
    )
    .unwrap();
    let mut conn = raw(&path).await;
    let version: i64 = sqlx::query_scalar("SELECT MAX(version) FROM tokenbudget_schema")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    assert_eq!(version, 3, "the fixture is a version 3 database");
    let before = counts(&path).await;

    let store = SqliteStore::open(&url(&path)).await.unwrap();
    assert_eq!(store.schema_version().await.unwrap(), SCHEMA_VERSION);
    assert_eq!(SCHEMA_VERSION, 8);
    assert_eq!(
        counts(&path).await,
        before,
        "the migration adds and drops no rows"
    );
    tokenbudget_core::testkit::check_v3_fixture_kept(&store)
        .await
        .unwrap();
    drop(store);
    // Opening again migrates nothing more and keeps what the check wrote.
    let store = SqliteStore::open(&url(&path)).await.unwrap();
    check_replay_matches_store(&store, LogCheck { strict_limit: true })
        .await
        .unwrap();
}

#[tokio::test]
async fn a_newer_schema_version_is_a_clear_error() {
    let (_dir, path) = temp_db();
    let store = SqliteStore::open(&url(&path)).await.unwrap();
    store
        .create_budget(NewBudget::workflow(id("wf"), 10), T0)
        .await
        .unwrap();
    drop(store);
    let mut conn = raw(&path).await;
    sqlx::query("INSERT INTO tokenbudget_schema VALUES (?1, 'from the future', 0)")
        .bind(SCHEMA_VERSION + 1)
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();

    let err = SqliteStore::open(&url(&path)).await.unwrap_err();
    assert!(!err.is_retryable());
    let message = err.to_string();
    assert!(
        matches!(
            err,
            Error::Storage {
                backend: "sqlite",
                ..
            }
        ) && message.contains(&format!("schema version {} is newer", SCHEMA_VERSION + 1)),
        "{message}"
    );
    assert_eq!(
        counts(&path).await,
        [1, 0, 1],
        "the refused open changed the data"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_opening_a_new_file_at_once_migrate_it_once() {
    let (_dir, path) = temp_db();
    let opens: Vec<_> = (0..6)
        .map(|_| {
            let url = url(&path);
            tokio::spawn(async move { SqliteStore::open(&url).await })
        })
        .collect();
    for open in opens {
        open.await.unwrap().expect("concurrent open");
    }
    let mut conn = raw(&path).await;
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tokenbudget_schema")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(rows, SCHEMA_VERSION);
}

#[tokio::test]
async fn urls_that_are_not_sqlite_or_cannot_open_are_typed_errors() {
    for bad in ["postgres://localhost/db", "", "  "] {
        let err = SqliteStore::open(bad).await.unwrap_err();
        assert!(matches!(err, Error::Config { .. }), "{bad:?}: {err}");
    }
    let err = SqliteStore::open("sqlite://?mode=bogus").await.unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err}");

    let (_dir, path) = temp_db();
    let missing = path.with_file_name("no-such-dir").join("x.db");
    let err = SqliteStore::open(&url(&missing)).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Storage {
                backend: "sqlite",
                retryable: false,
                ..
            }
        ),
        "{err}"
    );
    let err = SqliteStore::open_with(Config::new(url(&path)).with_create_if_missing(false))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Storage { .. }), "{err}");
    assert!(!path.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_memory_database_is_one_database_for_every_caller() {
    for spelling in [
        "sqlite::memory:",
        ":memory:",
        "sqlite://:memory:",
        "SQLITE::memory:",
    ] {
        let store = Arc::new(SqliteStore::open(spelling).await.unwrap());
        let other = SqliteStore::open(spelling).await.unwrap();
        let tracker = Tracker::new(store.clone());
        tracker.create_workflow("hot", 2_000).await.unwrap();
        assert!(
            store.budget(&id("hot")).await.unwrap().is_some(),
            "{spelling}"
        );
        assert_eq!(store.list_budgets().await.unwrap().len(), 1);
        assert!(
            other.budget(&id("hot")).await.unwrap().is_none(),
            "{spelling}: two stores share one in-memory database"
        );

        let tasks: Vec<_> = (0..16)
            .map(|task| tokio::spawn(churn(tracker.clone(), "hot", 20, task * 31 + 5)))
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        check_replay_matches_store(store.as_ref(), LogCheck { strict_limit: true })
            .await
            .unwrap();
    }
}

/// `op`'s output if it finishes within `polls` polls (yielding between them), else `None`,
/// `op` dropped unfinished.
async fn within_polls<F: Future>(polls: u32, op: F) -> Option<F::Output> {
    let mut op = std::pin::pin!(op);
    let mut left = polls;
    std::future::poll_fn(move |cx| match op.as_mut().poll(cx) {
        Poll::Ready(out) => Poll::Ready(Some(out)),
        Poll::Pending if left <= 1 => Poll::Ready(None),
        Poll::Pending => {
            left -= 1;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_operations_leave_no_transaction_open_and_nothing_half_written() {
    let (_dir, path) = temp_db();
    let store = Arc::new(SqliteStore::open(&url(&path)).await.unwrap());
    let tracker = Tracker::new(store.clone());
    tracker.create_workflow("wf", 1_000_000).await.unwrap();
    tracker.create_phase("wf:a", "wf", 500_000).await.unwrap();
    let (mut cancelled, mut first_poll_cuts) = (0, 0);
    for i in 0..300u32 {
        // Cut after 1 to 60 polls (each poll yields): operations are dropped at every stage
        // of their transaction. Which stage depends on the machine; that a cut after the
        // first poll cancels does not (the answer comes from another task).
        let polls = 1 + i * 7 % 60;
        first_poll_cuts += usize::from(polls == 1);
        let op = async {
            let grant = tracker
                .reserve("wf:a", 10, ReserveOptions::new())
                .await?
                .into_result()
                .expect("room");
            tracker.commit(grant.reservation.id, 7).await.map(|_| ())
        };
        match within_polls(polls, op).await {
            Some(result) => result.unwrap(),
            None => cancelled += 1,
        }
    }
    assert!(
        first_poll_cuts > 0 && cancelled >= first_poll_cuts,
        "{cancelled} operations were cancelled"
    );
    // The store still works, and every transaction was applied whole or not at all.
    let grant = tracker
        .reserve("wf:a", 10, ReserveOptions::new())
        .await
        .unwrap()
        .into_result()
        .unwrap();
    tracker.commit(grant.reservation.id, 10).await.unwrap();
    let budgets = check_replay_matches_store(store.as_ref(), LogCheck { strict_limit: true })
        .await
        .unwrap();
    let mut conn = raw(&path).await;
    let held: i64 = sqlx::query_scalar(
        "SELECT COALESCE(SUM(tokens), 0) FROM reservations WHERE state = 'held'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    let wf = budgets.iter().find(|b| b.id.as_str() == "wf").unwrap();
    assert_eq!(
        wf.reserved as i64, held,
        "held reservations and budget totals disagree"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_error_fails_its_own_operation_not_the_others_committed_with_it() {
    let (_dir, path) = temp_db();
    let store = Arc::new(SqliteStore::open(&url(&path)).await.unwrap());
    let tracker = Tracker::new(store.clone());
    tracker.create_workflow("ok", 1_000_000).await.unwrap();
    tracker.create_workflow("poison", 1_000_000).await.unwrap();
    // A storage failure no rule can foresee, after the operation's budget update was written.
    let mut conn = raw(&path).await;
    sqlx::query(
        "CREATE TRIGGER poison BEFORE INSERT ON reservations WHEN NEW.budget_id = 'poison' \
         BEGIN SELECT RAISE(ABORT, 'poisoned insert'); END",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();

    // Many operations at once, so they share transactions with the poisoned ones.
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let tracker = tracker.clone();
            let budget = if i % 5 == 0 { "poison" } else { "ok" };
            tokio::spawn(async move {
                (
                    budget,
                    tracker.reserve(budget, 10, ReserveOptions::new()).await,
                )
            })
        })
        .collect();
    let mut granted = 0;
    for task in tasks {
        match task.await.unwrap() {
            ("ok", Ok(outcome)) => granted += usize::from(outcome.granted().is_some()),
            ("poison", Err(e)) => {
                assert!(
                    matches!(&e, Error::Storage { backend: "sqlite", retryable: false, message, .. } if message.contains("poisoned")),
                    "{e}"
                );
            }
            (budget, other) => panic!("{budget}: unexpected {other:?}"),
        }
    }
    assert_eq!(granted, 32);
    let budgets = check_replay_matches_store(store.as_ref(), LogCheck { strict_limit: true })
        .await
        .unwrap();
    let by_id = |name: &str| {
        budgets
            .iter()
            .find(|b| b.id.as_str() == name)
            .unwrap()
            .clone()
    };
    assert_eq!((by_id("ok").reserved, by_id("ok").held), (320, 32));
    assert_eq!((by_id("poison").reserved, by_id("poison").held), (0, 0));
    assert_eq!(counts(&path).await, [2, 32, 34]);
}
