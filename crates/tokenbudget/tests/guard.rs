//! The guards for one call: `spend` and `Hold` never leave a hold behind.

use std::time::Duration;

use tokenbudget::{ReserveOptions, SpendError, TokenBudget};

async fn budgets() -> TokenBudget {
    let budgets = TokenBudget::builder()
        .url("memory://")
        .sweep_every(None)
        .build()
        .await
        .unwrap();
    budgets.create_workflow("wf", 1_000).await.unwrap();
    budgets
}

async fn used_reserved(budgets: &TokenBudget) -> (u64, u64) {
    let status = budgets.status("wf").await.unwrap();
    (status.used, status.reserved)
}

/// Lets spawned settlement tasks run (a current-thread runtime runs them when we yield).
async fn settle_background(budgets: &TokenBudget) {
    for _ in 0..100 {
        if budgets.status("wf").await.unwrap().reserved == 0 {
            return;
        }
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn spend_commits_what_the_call_reports() {
    let budgets = budgets().await;
    let spent = budgets
        .spend("wf", 400, ReserveOptions::new(), |grant| async move {
            assert_eq!(grant.reservation.tokens, 400);
            Ok::<_, std::io::Error>(250)
        })
        .await
        .unwrap();
    assert_eq!(spent.value, 250);
    assert_eq!(spent.commit.reservation.actual, Some(250));
    assert_eq!(used_reserved(&budgets).await, (250, 0));
}

#[tokio::test]
async fn spend_refuses_without_calling() {
    let budgets = budgets().await;
    let refused = budgets
        .spend("wf", 5_000, ReserveOptions::new(), |_| async {
            panic!("a refused spend must not call");
            #[allow(unreachable_code)]
            Ok::<u64, std::io::Error>(0)
        })
        .await;
    match refused {
        Err(SpendError::Refused(refusal)) => assert_eq!(refusal.available, 1_000),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_failed_call_releases_its_hold() {
    let budgets = budgets().await;
    let failed = budgets
        .spend("wf", 400, ReserveOptions::new(), |_| async {
            Err::<u64, _>(std::io::Error::other("upstream 500"))
        })
        .await;
    assert!(matches!(failed, Err(SpendError::Call(_))));
    assert_eq!(used_reserved(&budgets).await, (0, 0));
}

#[tokio::test(flavor = "current_thread")]
async fn a_panicking_call_releases_its_hold_and_the_panic_goes_on() {
    let budgets = budgets().await;
    let task = {
        let budgets = budgets.clone();
        tokio::spawn(async move {
            budgets
                .spend("wf", 400, ReserveOptions::new(), |_| async {
                    if true {
                        panic!("boom");
                    }
                    Ok::<u64, std::io::Error>(1)
                })
                .await
        })
    };
    let joined = task.await;
    assert!(
        joined.unwrap_err().is_panic(),
        "the panic reaches the caller"
    );
    assert_eq!(used_reserved(&budgets).await, (0, 0));
}

#[tokio::test(flavor = "current_thread")]
async fn a_cancelled_call_releases_its_hold() {
    let budgets = budgets().await;
    let (entered, wait) = tokio::sync::oneshot::channel::<()>();
    let task = {
        let budgets = budgets.clone();
        tokio::spawn(async move {
            budgets
                .spend("wf", 400, ReserveOptions::new(), |_| async move {
                    let _ = entered.send(());
                    std::future::pending::<()>().await;
                    Ok::<u64, std::io::Error>(1)
                })
                .await
        })
    };
    wait.await.unwrap();
    assert_eq!(
        used_reserved(&budgets).await,
        (0, 400),
        "held during the call"
    );
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    settle_background(&budgets).await;
    assert_eq!(used_reserved(&budgets).await, (0, 0));
}

#[tokio::test(flavor = "current_thread")]
async fn a_dropped_hold_rolls_back_and_a_committed_one_stays() {
    let budgets = budgets().await;
    let hold = budgets
        .hold("wf", 300, ReserveOptions::new())
        .await
        .unwrap()
        .unwrap();
    let id = hold.id();
    drop(hold);
    settle_background(&budgets).await;
    let stored = budgets.reservation(id).await.unwrap().unwrap();
    assert_eq!(stored.state, tokenbudget::ReservationState::Released);

    let mut hold = budgets
        .hold(
            "wf",
            300,
            ReserveOptions::new().with_timeout(Duration::from_secs(5)),
        )
        .await
        .unwrap()
        .unwrap();
    let before = hold.reservation().expires_at;
    hold.extend(Duration::from_secs(600)).await.unwrap();
    assert!(hold.reservation().expires_at > before);
    hold.commit(120).await.unwrap();
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(used_reserved(&budgets).await, (120, 0));
}

#[tokio::test]
async fn the_sweeper_runs_by_default_and_can_be_turned_off() {
    let default = TokenBudget::open("memory://").await.unwrap();
    assert!(default.sweeps_in_background());
    let off = TokenBudget::builder()
        .url("memory://")
        .sweep_every(None)
        .build()
        .await
        .unwrap();
    assert!(!off.sweeps_in_background());
}
