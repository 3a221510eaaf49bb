//! The tracker builder: store or URL, clock, ids, default timeout.

use std::sync::Arc;
use std::time::Duration;

use tokenbudget::{
    Error, ManualClock, MemoryStore, ReserveOptions, SequentialIds, Timestamp, TokenBudget,
    DEFAULT_TIMEOUT,
};

const T0: Timestamp = Timestamp::from_micros(1_750_000_000_000_000);

#[tokio::test]
async fn building_without_a_store_or_url_is_an_error() {
    let err = TokenBudget::builder().build().await.unwrap_err();
    assert!(matches!(err, Error::NoStore), "{err:?}");
}

#[tokio::test]
async fn a_given_store_is_used_as_is() {
    let store = MemoryStore::shared();
    let as_dyn: tokenbudget::DynBudgetStore = store.clone();
    let budgets = TokenBudget::builder()
        .url("memory://")
        .store(as_dyn.clone())
        .build()
        .await
        .unwrap();
    assert!(
        Arc::ptr_eq(budgets.store(), &as_dyn),
        "the last source given wins"
    );
    budgets.create_workflow("wf", 10).await.unwrap();
    let other = TokenBudget::builder().store(as_dyn).build().await.unwrap();
    assert_eq!(other.status("wf").await.unwrap().limit, 10);
}

#[tokio::test]
async fn a_url_given_after_a_store_is_opened() {
    let budgets = TokenBudget::builder()
        .store(MemoryStore::shared())
        .url("memory://nope")
        .build()
        .await
        .unwrap_err();
    assert!(matches!(budgets, Error::InvalidUrl { .. }), "{budgets:?}");
}

#[tokio::test]
async fn clock_ids_and_default_timeout_are_injected() {
    let clock = Arc::new(ManualClock::new(T0));
    let budgets = TokenBudget::builder()
        .url("memory://")
        .clock(clock.clone())
        .ids(Arc::new(SequentialIds::default()))
        .default_timeout(Duration::from_secs(90))
        .build()
        .await
        .unwrap();
    assert_eq!(budgets.default_timeout(), Duration::from_secs(90));
    let created = budgets.create_workflow("wf", 1_000).await.unwrap();
    assert_eq!(created.created_at, T0, "the injected clock stamps writes");

    let first = budgets
        .reserve("wf", 10, ReserveOptions::new())
        .await
        .unwrap()
        .into_result()
        .unwrap();
    assert_eq!(
        first.reservation.id.to_string(),
        "00000000-0000-4000-8000-000000000001",
        "the injected id generator names reservations"
    );
    assert_eq!(
        first.reservation.expires_at,
        T0.checked_add(Duration::from_secs(90)).unwrap()
    );
    let second = budgets
        .reserve(
            "wf",
            10,
            ReserveOptions::new().with_timeout(Duration::from_secs(5)),
        )
        .await
        .unwrap()
        .into_result()
        .unwrap();
    assert_eq!(
        second.reservation.expires_at,
        T0.checked_add(Duration::from_secs(5)).unwrap(),
        "a reserve's own timeout beats the default"
    );

    // Expiry follows the injected clock: no sleeping.
    clock.advance(Duration::from_secs(6));
    assert_eq!(budgets.sweep_expired().await.unwrap(), 1);
    clock.advance(Duration::from_secs(90));
    assert_eq!(budgets.sweep_expired().await.unwrap(), 1);
    assert_eq!(budgets.status("wf").await.unwrap().reserved, 0);
}

#[tokio::test]
async fn defaults_are_the_core_defaults() {
    let budgets = TokenBudget::open("memory://").await.unwrap();
    assert_eq!(budgets.default_timeout(), DEFAULT_TIMEOUT);
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let before = Timestamp::from_micros(i64::try_from(since_epoch.as_micros()).unwrap());
    let created = budgets.create_workflow("wf", 1).await.unwrap();
    assert!(created.created_at >= before, "the system clock by default");
    let grant = budgets
        .reserve("wf", 1, ReserveOptions::new())
        .await
        .unwrap()
        .into_result()
        .unwrap();
    assert_eq!(
        grant.reservation.id.as_uuid().get_version_num(),
        7,
        "UUIDv7 ids by default"
    );
}
