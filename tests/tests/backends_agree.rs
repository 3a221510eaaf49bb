//! Every backend tells the same story: one scripted run, touching every event type, gives
//! identical event logs, budgets and reservations on memory, SQLite and Postgres.

use std::sync::Arc;
use std::time::Duration;

use tokenbudget_core::testkit::tracker;
use tokenbudget_core::{
    DynBudgetStore, Event, EventQuery, IdempotencyKey, MemoryStore, Reservation, ReservationId,
    ReserveOptions,
};
use tokenbudget_tests::postgres_url_or_skip;

/// Runs the script; returns the whole log, every budget, and every reservation it made.
async fn script(
    store: DynBudgetStore,
) -> (Vec<Event>, Vec<tokenbudget_core::Budget>, Vec<Reservation>) {
    let (t, clock) = tracker(store.clone());
    let mut ids: Vec<ReservationId> = Vec::new();
    t.create_workflow("wf", 1_000).await.unwrap();
    t.create_phase("wf:plan", "wf", 300).await.unwrap();
    t.create_phase("wf:act", "wf", 900).await.unwrap();
    t.create_phase("wf:act:tool", "wf:act", 200).await.unwrap();

    let short = ReserveOptions::new().with_timeout(Duration::from_secs(2));
    let keyed = ReserveOptions::new().with_idempotency_key(IdempotencyKey::new("req-1").unwrap());
    for (budget, tokens, options) in [
        ("wf:plan", 250, keyed.clone()),
        ("wf:plan", 250, keyed),
        ("wf:act:tool", 150, short.clone()),
        ("wf:act", 500, ReserveOptions::new()),
        ("wf", 100, short),
        ("wf:act", 200, ReserveOptions::new()), // refused by the workflow
    ] {
        if let Some(grant) = t.reserve(budget, tokens, options).await.unwrap().granted() {
            if !grant.replayed {
                ids.push(grant.reservation.id);
            }
        }
    }
    t.commit(ids[0], 300).await.unwrap(); // overrun: the plan phase is exhausted
    t.rollback(ids[2]).await.unwrap();
    clock.advance(Duration::from_secs(3));
    assert_eq!(t.sweep_expired().await.unwrap(), 2);
    t.commit(ids[1], 120).await.unwrap(); // late: expired before the commit
    let more = t
        .reserve("wf:act:tool", 80, ReserveOptions::new())
        .await
        .unwrap();
    ids.push(
        more.granted()
            .unwrap_or_else(|| panic!("no room after expiry: {more:?}"))
            .reservation
            .id,
    );
    t.commit(ids[4], 80).await.unwrap(); // 120 late + 80: the tool phase is exhausted exactly

    let events = store.events(EventQuery::all()).await.unwrap();
    let budgets = store.list_budgets().await.unwrap();
    let mut reservations = Vec::new();
    for id in ids {
        reservations.push(store.reservation(id).await.unwrap().unwrap());
    }
    (events, budgets, reservations)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_sqlite_and_postgres_write_the_same_log() {
    let memory = script(MemoryStore::shared()).await;
    let types: Vec<&str> = memory.0.iter().map(|e| e.kind.type_name()).collect();
    for ty in [
        "BUDGET_CREATED",
        "TOKENS_RESERVED",
        "TOKENS_COMMITTED",
        "TOKENS_RELEASED",
        "BUDGET_EXHAUSTED",
    ] {
        assert!(types.contains(&ty), "the script never produced {ty}");
    }

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("agree.db").display());
    let sqlite: DynBudgetStore =
        Arc::new(tokenbudget_sqlite::SqliteStore::open(&url).await.unwrap());
    assert_eq!(script(sqlite).await, memory, "sqlite differs from memory");

    let Some(url) = postgres_url_or_skip() else {
        return;
    };
    let schema = tokenbudget_tests::unique_schema("agree");
    let config = tokenbudget_postgres::Config::new(url)
        .unwrap()
        .with_schema(&schema)
        // The script's clock is injected: the store decides with it, not the database's.
        .with_clock(tokenbudget_postgres::ClockSource::Caller);
    let postgres: DynBudgetStore = Arc::new(
        tokenbudget_postgres::PostgresStore::open_with(config)
            .await
            .unwrap(),
    );
    let result = script(postgres).await;
    tokenbudget_tests::drop_schema(&schema).await;
    assert_eq!(result, memory, "postgres differs from memory");
}
