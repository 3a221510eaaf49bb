//! Property tests every store runs: agreement with the reference model, and invariants under
//! random concurrent workloads.

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestCaseError, TestRunner};

use crate::error::Error;
use crate::id::{BudgetId, IdempotencyKey, ReservationId};
use crate::model::{NewBudget, ReservationState, MAX_TOKENS};
use crate::outcome::{RefusalReason, ReserveOutcome};
use crate::period::{Every, Period};
use crate::rules::UpdateCommand;
use crate::testkit::hammer::{verify, Ledger};
use crate::testkit::model::{Answer, Model, Op, NAMES};
use crate::testkit::{cases, check_replay_matches_store, tracker, LogCheck, StoreHarness};
use crate::tracker::{ReserveOptions, Tracker};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn runner(cases: u32, file: &'static str) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(file))),
        ..Config::default()
    })
}

/// Amounts: mostly small, so limits are met exactly and boundaries are exercised often; some
/// at and past the representable edge.
fn amount() -> impl Strategy<Value = u64> {
    prop_oneof![
        12 => 1..=300u64,
        12 => 1..=12u64,
        2 => Just(0u64),
        1 => Just(MAX_TOKENS),
        1 => Just(MAX_TOKENS + 1),
        1 => Just(u64::MAX),
    ]
}

/// Periods: none mostly; else a few seconds, so the clock's advances cross windows often.
fn period() -> impl Strategy<Value = Option<u64>> {
    prop_oneof![3 => Just(None), 2 => prop_oneof![Just(3u64), Just(7), Just(20)].prop_map(Some)]
}

fn op() -> impl Strategy<Value = Op> {
    let name = 0..NAMES.len();
    prop_oneof![
        3 => (name.clone(), proptest::option::weighted(0.6, 0..NAMES.len()), amount(), period())
            .prop_map(|(name, parent, limit, period_secs)| Op::Create { name, parent, limit, period_secs }),
        1 => (0..NAMES.len(), proptest::option::weighted(0.6, amount()), proptest::option::weighted(0.5, any::<bool>()))
            .prop_map(|(budget, limit, closed)| Op::Update { budget, limit, closed }),
        8 => (name, amount(), prop_oneof![1 => Just(0u64), 9 => 1..=20u64], proptest::option::weighted(0.3, 0..3usize))
            .prop_map(|(budget, tokens, timeout_secs, key)| Op::Reserve { budget, tokens, timeout_secs, key }),
        5 => (0..12usize, amount()).prop_map(|(res, actual)| Op::Commit { res, actual }),
        3 => (0..12usize).prop_map(|res| Op::Rollback { res }),
        2 => (0..12usize, prop_oneof![1 => Just(0u64), 9 => 1..=20u64])
            .prop_map(|(res, timeout_secs)| Op::Extend { res, timeout_secs }),
        2 => (0..NAMES.len(), amount(), 0..3usize)
            .prop_map(|(budget, tokens, key)| Op::Charge { budget, tokens, key }),
        2 => (0..=15u64).prop_map(|secs| Op::Advance { secs }),
        1 => Just(Op::Sweep),
    ]
}

/// Operation sequences. Half start from a workflow with two phases (names 0, 2 and 3) whose
/// limits are small, so that holds on one branch, their expiry and reserves on another meet
/// often: the shape where a due hold elsewhere in the tree decides a grant.
fn ops() -> impl Strategy<Value = Vec<Op>> {
    let tree = (1..=600u64, 1..=300u64, 1..=300u64, period(), period()).prop_map(
        |(wf, a, b, wf_period, phase_period)| {
            vec![
                Op::Create {
                    name: 0,
                    parent: None,
                    limit: wf,
                    period_secs: wf_period,
                },
                Op::Create {
                    name: 2,
                    parent: Some(0),
                    limit: a,
                    period_secs: phase_period,
                },
                Op::Create {
                    name: 3,
                    parent: Some(0),
                    limit: b,
                    period_secs: None,
                },
            ]
        },
    );
    (
        prop_oneof![Just(Vec::new()), tree],
        proptest::collection::vec(op(), 1..40),
    )
        .prop_map(|(mut prefix, ops)| {
            prefix.extend(ops);
            prefix
        })
}

fn error_kind(err: &Error) -> &'static str {
    match err {
        Error::InvalidBudgetId { .. } => "InvalidBudgetId",
        Error::InvalidReservationId { .. } => "InvalidReservationId",
        Error::InvalidIdempotencyKey { .. } => "InvalidIdempotencyKey",
        Error::InvalidAmount { .. } => "InvalidAmount",
        Error::InvalidTimeout { .. } => "InvalidTimeout",
        Error::BudgetNotFound { .. } => "BudgetNotFound",
        Error::BudgetExists { .. } => "BudgetExists",
        Error::ParentNotFound { .. } => "ParentNotFound",
        Error::HierarchyTooDeep { .. } => "HierarchyTooDeep",
        Error::ReservationNotFound { .. } => "ReservationNotFound",
        Error::ReservationConflict { .. } => "ReservationConflict",
        Error::IdempotencyConflict { .. } => "IdempotencyConflict",
        Error::ChargeConflict { .. } => "ChargeConflict",
        Error::InvalidNote { .. } => "InvalidNote",
        Error::Overflow { .. } => "Overflow",
        Error::InvalidAmountText { .. } => "InvalidAmountText",
        Error::InvalidModel { .. } => "InvalidModel",
        Error::InvalidPeriod { .. } => "InvalidPeriod",
        Error::UnitMismatch { .. } => "UnitMismatch",
        Error::Config { .. } => "Config",
        Error::Storage { .. } => "Storage",
    }
}

/// Runs one op against the tracker and normalizes the answer like the model's.
async fn apply_real(
    t: &Tracker,
    clock: &crate::ManualClock,
    issued: &mut Vec<ReservationId>,
    op: &Op,
) -> Answer {
    let ghost = ReservationId::from_uuid(uuid::Uuid::from_u128(u128::MAX - 7));
    let res_id = |i: usize, issued: &Vec<ReservationId>| issued.get(i).copied().unwrap_or(ghost);
    let result: Result<Answer, Error> = match op {
        Op::Create {
            name,
            parent,
            limit,
            period_secs,
        } => {
            let new = (|| {
                let id = BudgetId::new(NAMES[*name])?;
                let mut new = match parent {
                    None => NewBudget::workflow(id, *limit),
                    Some(p) => NewBudget::child(id, BudgetId::new(NAMES[*p])?, *limit),
                };
                if let Some(secs) = period_secs {
                    new = new.with_period(Period::new(
                        Every::Fixed(Duration::from_secs(*secs)),
                        None,
                        None,
                    )?);
                }
                Ok(new)
            })();
            match new {
                Ok(new) => t.create_budget(new).await.map(|_| Answer::Created),
                Err(e) => Err(e),
            }
        }
        Op::Update {
            budget,
            limit,
            closed,
        } => match BudgetId::new(NAMES[*budget]) {
            Ok(id) => t
                .update_budget(UpdateCommand {
                    budget_id: id,
                    limit: *limit,
                    closed: *closed,
                })
                .await
                .map(|b| Answer::Updated {
                    limit: b.limit,
                    closed: b.closed,
                }),
            Err(e) => Err(e),
        },
        Op::Reserve {
            budget,
            tokens,
            timeout_secs,
            key,
        } => {
            let mut options =
                ReserveOptions::new().with_timeout(Duration::from_secs(*timeout_secs));
            if let Some(k) = key {
                options =
                    options.with_idempotency_key(IdempotencyKey::new(format!("key-{k}")).unwrap());
            }
            t.reserve(NAMES[*budget], *tokens, options)
                .await
                .map(|outcome| match outcome {
                    ReserveOutcome::Granted(g) => {
                        let res = match issued.iter().position(|id| *id == g.reservation.id) {
                            Some(i) => i,
                            None => {
                                issued.push(g.reservation.id);
                                issued.len() - 1
                            }
                        };
                        Answer::Granted {
                            res,
                            tokens: g.reservation.tokens,
                            replayed: g.replayed,
                        }
                    }
                    ReserveOutcome::Refused(r) => Answer::Refused {
                        budget: r.budget_id.to_string(),
                        requested: r.requested,
                        available: r.available,
                        closed: r.reason == RefusalReason::Closed,
                    },
                })
        }
        Op::Commit { res, actual } => {
            t.commit(res_id(*res, issued), *actual)
                .await
                .map(|c| Answer::Committed {
                    actual: c.reservation.actual.unwrap_or_default(),
                    overrun: c.overrun,
                    late: c.late,
                    replayed: c.replayed,
                })
        }
        Op::Rollback { res } => {
            t.rollback(res_id(*res, issued))
                .await
                .map(|r| Answer::RolledBack {
                    released: r.released,
                    state: r.reservation.state.as_str(),
                })
        }
        Op::Extend { res, timeout_secs } => t
            .extend(res_id(*res, issued), Duration::from_secs(*timeout_secs))
            .await
            .map(|e| Answer::Extended {
                expires: u64::try_from(
                    e.reservation.expires_at.as_micros() - crate::testkit::T0.as_micros(),
                )
                .unwrap_or(u64::MAX),
            }),
        Op::Charge {
            budget,
            tokens,
            key,
        } => t
            .charge(
                NAMES[*budget],
                *tokens,
                IdempotencyKey::new(format!("charge-{key}")).unwrap(),
                Some(format!("proptest charge {key}")),
            )
            .await
            .map(|c| Answer::Charged {
                overrun: c.overrun,
                replayed: c.replayed,
            }),
        Op::Advance { secs } => {
            clock.advance(Duration::from_secs(*secs));
            Ok(Answer::Created)
        }
        Op::Sweep => t.sweep_expired().await.map(Answer::Swept),
    };
    result.unwrap_or_else(|e| Answer::Err(error_kind(&e)))
}

/// Random operation sequences give the same answers as the reference model, step by step,
/// and leave the same budgets and reservations; the event log replays to the stored state.
pub fn prop_matches_reference_model(h: &dyn StoreHarness) {
    let rt = runtime();
    let mut runner = runner(cases(h), "proptest-regressions/testkit-model.txt");
    let result = runner.run(&ops(), |ops| {
        rt.block_on(async {
            let (t, clock) = tracker(h.fresh_store().await);
            let mut model = Model::default();
            let mut issued = Vec::new();
            for (step, op) in ops.iter().enumerate() {
                let want = model.apply(op);
                let got = apply_real(&t, &clock, &mut issued, op).await;
                prop_assert_eq!(&got, &want, "step {} {:?}", step, op);
            }
            let listed = t
                .list()
                .await
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            for (i, b) in model.budgets.iter().enumerate() {
                let s = t
                    .status(NAMES[b.name])
                    .await
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let (used, reserved, held) = model.live(i);
                prop_assert_eq!(
                    (s.limit, s.used, s.reserved, s.held, s.closed),
                    (b.limit, used, reserved, held, b.closed),
                    "live status of budget {}",
                    NAMES[b.name]
                );
                let window = b.period.map(|(len, start)| (start, start + len));
                let micros = |t: crate::Timestamp| {
                    u64::try_from(t.as_micros() - crate::testkit::T0.as_micros()).unwrap_or(0)
                };
                prop_assert_eq!(
                    s.window.map(|w| (micros(w.start), micros(w.end))),
                    window,
                    "current window of {}",
                    NAMES[b.name]
                );
                let held_below = t
                    .reservations(
                        Some(s.id.clone()),
                        Some(ReservationState::Held),
                        None,
                        usize::MAX,
                    )
                    .await
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(
                    held_below.len() as u64,
                    held,
                    "reservations held on and below {}",
                    NAMES[b.name]
                );
                prop_assert!(
                    listed.contains(&s),
                    "list() agrees with status() on {}",
                    NAMES[b.name]
                );
                prop_assert_eq!(
                    s.parent.map(|p| p.to_string()),
                    b.parent.map(|p| NAMES[model.budgets[p].name].to_owned())
                );
            }
            prop_assert_eq!(listed.len(), model.budgets.len());
            for (i, r) in model.res.iter().enumerate() {
                let stored = t
                    .store()
                    .reservation(issued[i])
                    .await
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let stored =
                    stored.ok_or_else(|| TestCaseError::fail("granted reservation missing"))?;
                prop_assert_eq!(
                    (stored.state.as_str(), stored.actual, stored.tokens),
                    (r.state, r.actual, r.tokens)
                );
            }
            check_replay_matches_store(t.store().as_ref(), LogCheck::default())
                .await
                .map_err(TestCaseError::fail)?;
            Ok(())
        })
    });
    if let Err(err) = result {
        panic!("{err}");
    }
}

/// One task's plan: (target budget index, tokens, what to do after the grant).
type Plan = Vec<(usize, u64, u8)>;

fn workload() -> impl Strategy<Value = (u64, Vec<u64>, Vec<Plan>)> {
    (
        100..2_000u64,
        proptest::collection::vec(50..1_500u64, 1..=3),
        proptest::collection::vec(
            proptest::collection::vec((0..4usize, 1..400u64, 0..10u8), 1..20),
            2..=6,
        ),
    )
}

/// Random concurrent workloads on a workflow and its phases, with on-time commits of at most
/// the reserved amount: used equals the committed actuals, reserved equals the held
/// reservations, `used + reserved <= limit` at every level after every event, every grant had
/// room, and the log replays to the stored state.
pub fn prop_concurrent_invariants(h: &dyn StoreHarness) {
    let rt = runtime();
    let mut runner = runner(
        (cases(h) / 4).max(8),
        "proptest-regressions/testkit-concurrent.txt",
    );
    let result = runner.run(&workload(), |(wf_limit, phase_limits, plans)| {
        rt.block_on(async {
            let (t, _) = tracker(h.fresh_store().await);
            t.create_workflow("wf", wf_limit)
                .await
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let mut targets = vec![BudgetId::new("wf").unwrap()];
            for (i, limit) in phase_limits.iter().enumerate() {
                let id = BudgetId::new(format!("wf:{i}")).unwrap();
                t.create_phase(&id, "wf", *limit)
                    .await
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                targets.push(id);
            }
            let handles: Vec<_> = plans
                .into_iter()
                .map(|plan| {
                    let (t, targets) = (t.clone(), targets.clone());
                    tokio::spawn(async move {
                        let mut ledger = Ledger::default();
                        for (target, tokens, action) in plan {
                            let budget = targets[target % targets.len()].clone();
                            let outcome = t.reserve(&budget, tokens, ReserveOptions::new()).await?;
                            let Some(grant) = outcome.granted() else {
                                ledger.refusals += 1;
                                continue;
                            };
                            let id = grant.reservation.id;
                            let (state, actual) = match action {
                                0..=4 => {
                                    let actual = tokens * u64::from(action) / 4;
                                    t.commit(id, actual).await?;
                                    (ReservationState::Committed, actual)
                                }
                                5..=7 => {
                                    t.rollback(id).await?;
                                    (ReservationState::Released, 0)
                                }
                                _ => (ReservationState::Held, 0),
                            };
                            ledger
                                .reservations
                                .insert(id, (budget, tokens, state, actual));
                        }
                        Ok::<_, Error>(ledger)
                    })
                })
                .collect();
            let mut total = Ledger {
                reservations: BTreeMap::new(),
                refusals: 0,
            };
            for handle in handles {
                let ledger = handle
                    .await
                    .map_err(|e| TestCaseError::fail(e.to_string()))?
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                total.refusals += ledger.refusals;
                total.reservations.extend(ledger.reservations);
            }
            verify(&t, &total).await;
            Ok(())
        })
    });
    if let Err(err) = result {
        panic!("{err}");
    }
}
