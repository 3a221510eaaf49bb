//! Postgres-specific behaviour: opening and migrating, typed errors that write nothing, lock
//! waits and their retries, and a caller dropped while its transaction waits for a lock.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::workload;
use tokenbudget_core::rules::{CommitCommand, ReserveCommand};
use tokenbudget_core::{
    BudgetId, BudgetStore, DynBudgetStore, Error, EventQuery, IdempotencyKey, NewBudget,
    ReservationId, ReserveOptions, Timestamp, Tracker, MAX_TOKENS,
};
use tokenbudget_postgres::{ClockSource, Config, PostgresStore};

async fn count(admin: &tokio_postgres::Client, schema: &str, table: &str) -> i64 {
    admin
        .query_one(&format!("SELECT count(*) FROM \"{schema}\".{table}"), &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_instances_opening_at_once_migrate_exactly_once() {
    let Some(url) = common::require_database() else {
        return;
    };
    let schema = common::unique_schema();
    let _drop = common::SchemaGuard(url.clone(), schema.clone());
    let opens: Vec<_> = (0..10)
        .map(|_| {
            let config = common::config(&url, &schema).with_pool_size(1);
            tokio::spawn(PostgresStore::open_with(config))
        })
        .collect();
    let mut stores = Vec::new();
    for open in opens {
        stores.push(open.await.unwrap().expect("every instance opens"));
    }
    let admin = common::admin(&url).await;
    let versions: Vec<(i32, String)> = admin
        .query(
            &format!("SELECT version, name FROM \"{schema}\".tokenbudget_migrations"),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        versions,
        [
            (1, "initial".to_owned()),
            (2, "trees_and_log_order".to_owned()),
            (3, "usage ledger".to_owned()),
            (4, "periods_units_admin".to_owned()),
            (5, "ledger_charge".to_owned()),
            (6, "ledger_aggregate".to_owned()),
            (7, "events_by_type".to_owned()),
            (8, "ledger_shadowed".to_owned())
        ]
    );
    for (n, store) in stores.iter().enumerate() {
        let id = BudgetId::new(format!("wf-{n}")).unwrap();
        store
            .create_budget(NewBudget::workflow(id, 10), Timestamp::EPOCH)
            .await
            .expect("each instance works");
    }
    assert_eq!(stores[3].list_budgets().await.unwrap().len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_from_a_newer_version_is_refused() {
    let Some(url) = common::require_database() else {
        return;
    };
    let schema = common::unique_schema();
    let _drop = common::SchemaGuard(url.clone(), schema.clone());
    drop(
        PostgresStore::open_with(common::config(&url, &schema))
            .await
            .unwrap(),
    );
    let admin = common::admin(&url).await;
    admin
        .execute(
            &format!(
                "INSERT INTO \"{schema}\".tokenbudget_migrations (version, name) VALUES (99, 'future')"
            ),
            &[],
        )
        .await
        .unwrap();
    let err = PostgresStore::open_with(common::config(&url, &schema))
        .await
        .unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    assert!(err.to_string().contains("newer"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configuration_and_an_unreachable_database_are_typed_errors() {
    let err = PostgresStore::open_with(Config::default().with_schema("Bad-Name"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err}");
    let err = PostgresStore::open("postgres://nobody:pw@127.0.0.1:notaport/x")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err}");
    assert!(
        !err.to_string().contains(":pw@"),
        "the password leaked: {err}"
    );

    // Nothing listens on port 1: retryable, after the bounded retries.
    let config = Config::new("postgres://postgres:secret@127.0.0.1:1/x")
        .unwrap()
        .with_max_attempts(3)
        .with_create_timeout(Duration::from_secs(1));
    let err = PostgresStore::open_with(config).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Storage {
                backend: "postgres",
                retryable: true,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!err.to_string().contains("secret"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_a_typed_error_and_writes_nothing() {
    let Some(url) = common::require_database() else {
        return;
    };
    let schema = common::unique_schema();
    let _drop = common::SchemaGuard(url.clone(), schema.clone());
    let store: DynBudgetStore = Arc::new(
        PostgresStore::open_with(common::config(&url, &schema))
            .await
            .unwrap(),
    );
    let admin = common::admin(&url).await;
    let t = Tracker::new(store.clone());
    t.create_workflow("wf", 1_000).await.unwrap();
    t.create_phase("wf:a", "wf", 500).await.unwrap();
    let key: IdempotencyKey = "k1".parse().unwrap();
    let held = common::reserve_keyed(&t, "wf:a", 10, &key).await;
    let now = t.clock().now();

    let before = (
        count(&admin, &schema, "budgets").await,
        count(&admin, &schema, "reservations").await,
        count(&admin, &schema, "events").await,
        store.list_budgets().await.unwrap(),
    );
    let id = |s: &str| BudgetId::new(s).unwrap();
    let reserve = |budget: &str, tokens: u64, timeout: Duration| ReserveCommand {
        reservation_id: ReservationId::from_uuid(uuid::Uuid::now_v7()),
        budget_id: id(budget),
        tokens,
        timeout,
        idempotency_key: None,
        model: None,
        asked: None,
    };
    let minute = Duration::from_secs(60);
    let mut rejections: Vec<(&str, Error)> = Vec::new();
    for (what, new) in [
        ("zero limit", NewBudget::workflow(id("x"), 0)),
        (
            "limit above i64",
            NewBudget::workflow(id("x"), MAX_TOKENS + 1),
        ),
        ("duplicate", NewBudget::workflow(id("wf"), 5)),
        ("unknown parent", NewBudget::child(id("x"), id("nope"), 5)),
    ] {
        rejections.push((what, store.create_budget(new, now).await.unwrap_err()));
    }
    for (what, cmd) in [
        ("zero tokens", reserve("wf:a", 0, minute)),
        ("tokens above i64", reserve("wf:a", u64::MAX, minute)),
        ("unknown budget", reserve("nope", 5, minute)),
        ("zero timeout", reserve("wf:a", 5, Duration::ZERO)),
        (
            "reused reservation id",
            ReserveCommand {
                reservation_id: held.reservation.id,
                ..reserve("wf", 5, minute)
            },
        ),
        (
            "idempotency key reused elsewhere",
            ReserveCommand {
                idempotency_key: Some(key.clone()),
                ..reserve("wf", 10, minute)
            },
        ),
    ] {
        rejections.push((what, store.reserve(cmd, now).await.unwrap_err()));
    }
    let unknown = ReservationId::from_uuid(uuid::Uuid::now_v7());
    rejections.push(("commit unknown", t.commit(unknown, 1).await.unwrap_err()));
    rejections.push((
        "commit above i64",
        store
            .commit(
                CommitCommand {
                    reservation_id: held.reservation.id,
                    actual: MAX_TOKENS + 1,
                },
                now,
            )
            .await
            .unwrap_err(),
    ));
    rejections.push(("rollback unknown", t.rollback(unknown).await.unwrap_err()));

    let kinds: Vec<(&str, &str)> = rejections
        .iter()
        .map(|(what, e)| {
            assert!(!e.is_retryable(), "{what}: {e:?}");
            let kind = match e {
                // The core answers a reused reservation id with other parameters this way.
                Error::Storage {
                    backend: "core", ..
                } => "Storage(core)",
                Error::InvalidAmount { .. } => "InvalidAmount",
                Error::BudgetExists { .. } => "BudgetExists",
                Error::ParentNotFound { .. } => "ParentNotFound",
                Error::BudgetNotFound { .. } => "BudgetNotFound",
                Error::InvalidTimeout { .. } => "InvalidTimeout",
                Error::IdempotencyConflict { .. } => "IdempotencyConflict",
                Error::ReservationNotFound { .. } => "ReservationNotFound",
                other => panic!("{what}: unexpected {other:?}"),
            };
            (*what, kind)
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("zero limit", "InvalidAmount"),
            ("limit above i64", "InvalidAmount"),
            ("duplicate", "BudgetExists"),
            ("unknown parent", "ParentNotFound"),
            ("zero tokens", "InvalidAmount"),
            ("tokens above i64", "InvalidAmount"),
            ("unknown budget", "BudgetNotFound"),
            ("zero timeout", "InvalidTimeout"),
            ("reused reservation id", "Storage(core)"),
            ("idempotency key reused elsewhere", "IdempotencyConflict"),
            ("commit unknown", "ReservationNotFound"),
            ("commit above i64", "InvalidAmount"),
            ("rollback unknown", "ReservationNotFound"),
        ]
    );
    let after = (
        count(&admin, &schema, "budgets").await,
        count(&admin, &schema, "reservations").await,
        count(&admin, &schema, "events").await,
        store.list_budgets().await.unwrap(),
    );
    assert_eq!(after, before, "a rejected command wrote something");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_held_too_long_is_a_retryable_error_after_bounded_retries() {
    let Some(url) = common::require_database() else {
        return;
    };
    let schema = common::unique_schema();
    let _drop = common::SchemaGuard(url.clone(), schema.clone());
    let config = common::config(&url, &schema)
        .with_lock_timeout(Duration::from_millis(100))
        .with_max_attempts(3)
        .with_retry_delays(Duration::from_millis(10), Duration::from_millis(20));
    let store: DynBudgetStore = Arc::new(PostgresStore::open_with(config).await.unwrap());
    let t = Tracker::new(store.clone());
    t.create_workflow("wf", 1_000).await.unwrap();
    t.create_phase("wf:a", "wf", 500).await.unwrap();

    // Locking the workflow blocks its phase too: the whole chain is locked.
    let release = common::locks::hold_row_lock(&url, &schema, "wf").await;
    let err = t
        .reserve("wf:a", 10, ReserveOptions::new())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Storage {
                backend: "postgres",
                retryable: true,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("lock"), "{err}");
    assert!(
        err.to_string().contains("gave up after 3 attempts: "),
        "{err}"
    );
    drop(release);
    let status = t.status("wf:a").await.unwrap();
    assert_eq!(
        (status.reserved, status.held),
        (0, 0),
        "a failed reserve held tokens"
    );

    // Released during the retries: the operation succeeds. (A store allowed many attempts, and
    // the lock released once its transaction is seen waiting, so no step depends on speed.)
    let patient = PostgresStore::open_with(
        common::config(&url, &schema)
            .with_application_name(format!("tbp_{schema}"))
            .with_lock_timeout(Duration::from_millis(100))
            .with_max_attempts(1_000)
            .with_retry_delays(Duration::from_millis(1), Duration::from_millis(5)),
    )
    .await
    .unwrap();
    let t = Tracker::new(Arc::new(patient));
    let admin = common::admin(&url).await;
    let release = common::locks::hold_row_lock(&url, &schema, "wf").await;
    let reserve = tokio::spawn({
        let t = t.clone();
        async move { t.reserve("wf:a", 10, ReserveOptions::new()).await }
    });
    while common::locks::lock_waiters(&admin, &format!("tbp_{schema}")).await == 0 {
        tokio::task::yield_now().await;
    }
    drop(release);
    let grant = reserve
        .await
        .unwrap()
        .expect("reserve after the lock is released");
    assert!(grant.granted().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_dropped_while_its_transaction_waits_leaves_it_to_finish_cleanly() {
    let Some(url) = common::require_database() else {
        return;
    };
    let schema = common::unique_schema();
    let _drop = common::SchemaGuard(url.clone(), schema.clone());
    let config = common::config(&url, &schema).with_pool_size(1);
    let application_name = config.application_name.clone();
    let postgres = Arc::new(PostgresStore::open_with(config).await.unwrap());
    let store: DynBudgetStore = postgres.clone();
    let t = Tracker::new(store.clone());
    t.create_workflow("wf", 1_000).await.unwrap();
    let admin = common::admin(&url).await;

    let release = common::locks::hold_row_lock(&url, &schema, "wf").await;
    // The caller gives up (its future is dropped) once the store's transaction is seen blocked
    // on the row lock (BEGIN sent, inside the transaction).
    tokio::select! {
        outcome = t.reserve("wf", 40, ReserveOptions::new()) => {
            panic!("the reserve ended while the row was locked: {outcome:?}")
        }
        () = async {
            while common::locks::lock_waiters(&admin, &application_name).await == 0 {
                tokio::task::yield_now().await;
            }
        } => {}
    }
    assert!(
        common::locks::lock_waiters(&admin, &application_name).await > 0,
        "the transaction should still be waiting for the lock"
    );
    drop(release);

    // The transaction runs to its end in its own task: the grant happened exactly once, the
    // connection is back in the pool outside any transaction, and the next operation works.
    // (The bound only turns a hang into a failure.)
    for _ in 0..6_000 {
        if t.status("wf").await.unwrap().held == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let status = t.status("wf").await.unwrap();
    assert_eq!((status.reserved, status.held), (40, 1));
    assert_eq!(
        workload::sessions_in_transaction(&admin, &application_name).await,
        0
    );
    assert_eq!(postgres.pool_status().size, 1);
    let grant = t
        .reserve("wf", 1, ReserveOptions::new())
        .await
        .unwrap()
        .into_result()
        .unwrap();
    t.commit(grant.reservation.id, 1).await.unwrap();
    workload::verify_consistency(&store, &admin, &schema).await;
}

/// The schema the release before schema 4 wrote (`tests/fixtures/v3.sql`, a `pg_dump
/// --inserts` of it; see `testkit::check_v3_fixture_kept` for how it was made), loaded into a
/// fresh schema and migrated in place at open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_written_by_the_previous_release_migrates_keeping_everything() {
    let Some(url) = common::require_database() else {
        return;
    };
    let schema = common::unique_schema();
    let _drop = common::SchemaGuard(url.clone(), schema.clone());
    let admin = common::admin(&url).await;
    let dump = include_str!("fixtures/v3.sql").replace("fx_v3", &schema);
    admin.batch_execute(&dump).await.unwrap();
    let latest = format!("SELECT max(version) FROM \"{schema}\".tokenbudget_migrations");
    let version = admin
        .query_one(&latest, &[])
        .await
        .unwrap()
        .get::<_, i32>(0);
    assert_eq!(version, 3, "the fixture is a version 3 schema");

    let config = common::config(&url, &schema).with_clock(ClockSource::Caller);
    let store = PostgresStore::open_with(config.clone()).await.unwrap();
    let version = admin
        .query_one(&latest, &[])
        .await
        .unwrap()
        .get::<_, i32>(0);
    assert_eq!(version, 8);
    tokenbudget_core::testkit::check_v3_fixture_kept(&store)
        .await
        .unwrap();
    drop(store);
    let store = PostgresStore::open_with(config).await.unwrap();
    tokenbudget_core::testkit::check_replay_matches_store(
        &store,
        tokenbudget_core::testkit::LogCheck { strict_limit: true },
    )
    .await
    .unwrap();
}

/// A schema at version 1 (its own DDL, as released) holding a store's data migrates to
/// version 2 at open: every row kept, reservations given their tree's root, events the xid 0
/// that puts them first in log order, and the data works with the new queries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_schema_migrates_to_the_current_version_keeping_its_data() {
    let Some(url) = common::require_database() else {
        return;
    };
    let (source, old) = (common::unique_schema(), common::unique_schema());
    let _drop = (
        common::SchemaGuard(url.clone(), source.clone()),
        common::SchemaGuard(url.clone(), old.clone()),
    );
    // Data written by the store: a workflow with two phases, a hold that will be due, a hold
    // that will not, a commit and a rollback.
    let config = |schema: &str| common::config(&url, schema).with_clock(ClockSource::Caller);
    let store: DynBudgetStore = Arc::new(PostgresStore::open_with(config(&source)).await.unwrap());
    let (t, clock) = tokenbudget_core::testkit::tracker(store.clone());
    t.create_workflow("wf", 1_000).await.unwrap();
    t.create_phase("wf:a", "wf", 1_000).await.unwrap();
    t.create_phase("wf:b", "wf", 1_000).await.unwrap();
    let short = ReserveOptions::new().with_timeout(Duration::from_secs(1));
    let due = t
        .reserve("wf:a", 800, short)
        .await
        .unwrap()
        .into_result()
        .unwrap();
    let kept = t
        .reserve("wf:b", 100, ReserveOptions::new())
        .await
        .unwrap()
        .into_result()
        .unwrap();
    let done = t
        .reserve("wf:a", 50, ReserveOptions::new())
        .await
        .unwrap()
        .into_result()
        .unwrap();
    t.commit(done.reservation.id, 40).await.unwrap();
    let back = t
        .reserve("wf:b", 20, ReserveOptions::new())
        .await
        .unwrap()
        .into_result()
        .unwrap();
    t.rollback(back.reservation.id).await.unwrap();
    let budgets = store.list_budgets().await.unwrap();
    let events = store.events(EventQuery::all()).await.unwrap();
    let ids = [
        due.reservation.id,
        kept.reservation.id,
        done.reservation.id,
        back.reservation.id,
    ];
    let mut reservations = Vec::new();
    for id in ids {
        reservations.push(store.reservation(id).await.unwrap().unwrap());
    }

    // The same rows in a schema made by version 1's own migration.
    let admin = common::admin(&url).await;
    admin
        .batch_execute(&format!(
            "CREATE SCHEMA \"{old}\"; SET search_path TO \"{old}\";
             CREATE TABLE tokenbudget_migrations (
                 version integer PRIMARY KEY, name text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now());
             {v1}
             INSERT INTO tokenbudget_migrations (version, name) VALUES (1, 'initial');
             INSERT INTO budgets
                 SELECT id, parent, chain, limit_tokens, used, reserved, held, created_at
                 FROM \"{source}\".budgets;
             INSERT INTO reservations
                 SELECT id, budget_id, tokens, state, created_at, expires_at, idempotency_key,
                        actual, settled_at
                 FROM \"{source}\".reservations;
             INSERT INTO events (budget_id, at, type, reservation_id, kind)
                 SELECT budget_id, at, type, reservation_id, kind FROM \"{source}\".events
                 ORDER BY seq;
             RESET search_path;",
            v1 = include_str!("../migrations/0001_initial.sql"),
        ))
        .await
        .unwrap();

    let migrated: DynBudgetStore = Arc::new(PostgresStore::open_with(config(&old)).await.unwrap());
    let versions: Vec<i32> = common::column(
        &admin,
        &format!("SELECT version FROM \"{old}\".tokenbudget_migrations ORDER BY 1"),
    )
    .await;
    assert_eq!(versions, [1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(migrated.list_budgets().await.unwrap(), budgets);
    assert_eq!(migrated.events(EventQuery::all()).await.unwrap(), events);
    for reservation in &reservations {
        assert_eq!(
            migrated.reservation(reservation.id).await.unwrap().as_ref(),
            Some(reservation)
        );
    }
    let filled: Vec<(String, i64)> = admin
        .query(
            &format!(
                "SELECT root, count(*) FROM \"{old}\".reservations GROUP BY root
                 UNION ALL SELECT 'xid ' || xid::text, count(*) FROM \"{old}\".events GROUP BY xid"
            ),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        filled,
        [
            ("wf".to_owned(), 4),
            ("xid 0".to_owned(), events.len() as i64)
        ]
    );

    // The migrated data works: wf:a's due hold is released by a reserve on its sibling.
    let t = Tracker::builder(migrated.clone())
        .clock(clock.clone())
        .build();
    clock.advance(Duration::from_secs(2));
    t.reserve("wf:b", 800, ReserveOptions::new())
        .await
        .unwrap()
        .into_result()
        .expect("the migrated due hold refused a sibling");
    let due = migrated
        .reservation(due.reservation.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(due.state, tokenbudget_core::ReservationState::Expired);
    workload::verify_consistency(&migrated, &admin, &old).await;
}
