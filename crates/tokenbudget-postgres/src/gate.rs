//! The batch leaders: the writes queued in this process run together, across budget trees.
//!
//! Every write on a budget tree takes the tree's lock, and Postgres holds it through the
//! commit's WAL flush, so one tree tops out at one transaction per flush, and every
//! transaction, on any tree, waits for a flush of its own. So the writes of this process
//! queue here, and a leader takes what is queued (at most
//! [`Config::max_batch`](crate::Config::max_batch)) and runs it as one
//! [`Batch`](crate::batch::Batch): one transaction, one flush, one lock acquisition per tree
//! it touches (the trees' locks are taken in one statement in key order, see
//! [`sql`](crate::sql), so batches spanning trees cannot deadlock). A batch starts as soon as
//! a leader is free, with whatever is queued: nobody waits for a batch to fill, so a lone
//! caller waits no longer than with no batching at all.
//!
//! Two limits keep batches flowing:
//!
//! - at most [`Config::root_concurrency`](crate::Config::root_concurrency) batches in flight
//!   touch any one tree (one by default: while a batch holds the tree's lock, what arrives
//!   queues here and runs in the next batch, whole). A write on a tree already at that limit
//!   stays queued for the next batch;
//! - at most [`Config::max_batches`](crate::Config::max_batches) leaders run at once (each
//!   holds a pooled connection while its batch runs).
//!
//! A leader is a task of its own: a caller that drops its future only stops waiting for the
//! answer; the write runs to its end.
//!
//! The gate learns the tree of a budget from the rows each operation locks (a budget's parent
//! never changes), and the tree of a reservation from the reserve that granted it. A write on a
//! tree not known yet runs alone. All this orders this process's writes only: across
//! processes the locks decide.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use tokenbudget_core::{Budget, BudgetId, ReservationId, Timestamp};
use tokio::sync::oneshot;

use crate::batch::{Answer, Answers, Cmd};

/// How many budgets, and how many held reservations, the gate remembers the tree of; past
/// that it forgets them all and learns again (an unknown tree only means no batching).
const REMEMBERED: usize = 100_000;

/// Runs a batch of commands in one transaction and answers each (the store's is
/// `store::BatchRunner`; the tests have a recording one).
#[async_trait]
pub(crate) trait Runner: Send + Sync + 'static {
    async fn run(&self, cmds: Vec<(Cmd, Timestamp)>) -> Answers;
}

/// The batch leaders; see the module docs.
#[derive(Debug)]
pub(crate) struct Gate {
    per_root: usize,
    max_batch: usize,
    max_leaders: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The root of each budget seen.
    roots: HashMap<BudgetId, BudgetId>,
    /// The root of each reservation granted here and not yet settled here.
    held: HashMap<ReservationId, BudgetId>,
    /// The writes not yet in a batch, in arrival order.
    waiting: VecDeque<Waiter>,
    /// How many batches in flight touch each tree (trees with none are absent).
    busy: HashMap<BudgetId, usize>,
    /// Leaders running.
    leaders: usize,
}

#[derive(Debug)]
struct Waiter {
    root: BudgetId,
    cmd: Cmd,
    now: Timestamp,
    reply: oneshot::Sender<tokenbudget_core::Result<Answer>>,
}

/// What a write is keyed by.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target<'a> {
    /// A reserve or charge on this budget.
    Budget(&'a BudgetId),
    /// A commit, rollback or extend of this reservation.
    Reservation(ReservationId),
}

impl Gate {
    /// Leaders for at most `max_leaders` batches at once, each of at most `max_batch`
    /// commands, with at most `per_root` of them touching any one tree; `per_root` 0 runs
    /// every command alone.
    pub(crate) fn new(per_root: usize, max_batch: usize, max_leaders: usize) -> Self {
        Self {
            per_root,
            max_batch: max_batch.max(1),
            max_leaders: max_leaders.max(1),
            state: Mutex::default(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The state is a cache and queues of senders: a panic while it was locked leaves
        // nothing half-done that matters for correctness.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `cmd`: in a batch with the others queued, or alone (`runner` directly) when its
    /// tree is not known yet or batching is off.
    pub(crate) async fn run(
        self: &Arc<Self>,
        runner: &Arc<dyn Runner>,
        target: Target<'_>,
        cmd: Cmd,
        now: Timestamp,
    ) -> tokenbudget_core::Result<Answer> {
        let root = if self.per_root == 0 {
            None
        } else {
            let state = self.state();
            match target {
                Target::Budget(id) => state.roots.get(id),
                Target::Reservation(id) => state.held.get(&id),
            }
            .cloned()
        };
        let Some(root) = root else {
            return one(runner.run(vec![(cmd, now)]).await);
        };
        let (reply, answer) = oneshot::channel();
        let leads = {
            let mut state = self.state();
            // A new leader only when it would find this write admissible; otherwise a running
            // leader takes it when its batch ends (every tree at its limit has one).
            let free = state.busy.get(&root).copied().unwrap_or(0) < self.per_root;
            state.waiting.push_back(Waiter {
                root,
                cmd,
                now,
                reply,
            });
            let lead = free && state.leaders < self.max_leaders;
            if lead {
                state.leaders += 1;
            }
            lead
        };
        if leads {
            tokio::spawn(lead(self.clone(), runner.clone()));
        }
        answer.await.unwrap_or_else(|_| {
            Err(tokenbudget_core::Error::storage(
                "postgres",
                false,
                "the batch running this operation ended without an answer",
            ))
        })
    }

    /// Learns the tree of every budget in `locked` whose ancestors were locked with it (the
    /// whole chain is, for every write).
    pub(crate) fn learn<'a>(&self, locked: impl IntoIterator<Item = &'a Budget> + Clone) {
        if self.per_root == 0 {
            return;
        }
        let mut state = self.state();
        // After an operation or two every budget of a tree is known: nothing to build.
        if locked
            .clone()
            .into_iter()
            .all(|b| state.roots.contains_key(&b.id))
        {
            return;
        }
        let parents: HashMap<&BudgetId, Option<&BudgetId>> = locked
            .clone()
            .into_iter()
            .map(|b| (&b.id, b.parent.as_ref()))
            .collect();
        for budget in locked {
            if state.roots.contains_key(&budget.id) {
                continue;
            }
            let mut root = &budget.id;
            let found = loop {
                match parents.get(root) {
                    Some(Some(parent)) => root = parent,
                    Some(None) => break true,
                    None => break false,
                }
            };
            if found {
                if state.roots.len() >= REMEMBERED {
                    state.roots.clear();
                }
                let root = root.clone();
                state.roots.insert(budget.id.clone(), root);
            }
        }
    }

    /// Remembers that reservation `id` holds tokens on `budget`'s tree.
    pub(crate) fn granted(&self, id: ReservationId, budget: &BudgetId) {
        if self.per_root == 0 {
            return;
        }
        let mut state = self.state();
        if let Some(root) = state.roots.get(budget).cloned() {
            if state.held.len() >= REMEMBERED {
                state.held.clear();
            }
            state.held.insert(id, root);
        }
    }

    /// Forgets reservation `id` after its commit or rollback.
    pub(crate) fn settled(&self, id: ReservationId) {
        if self.per_root == 0 {
            return;
        }
        self.state().held.remove(&id);
    }

    /// The next batch: the waiting writes, in arrival order, on trees with fewer than
    /// `per_root` batches in flight (or already in this batch), at most `max_batch`; with the
    /// trees it touches, each now counted busy. `None` (and this leader retires) when no
    /// waiting write is admissible.
    fn next_batch(&self) -> Option<(Vec<Waiter>, Vec<BudgetId>)> {
        let mut state = self.state();
        let state = &mut *state;
        let mut trees: HashSet<BudgetId> = HashSet::new();
        let mut batch = Vec::new();
        let mut left = VecDeque::with_capacity(state.waiting.len());
        for waiter in state.waiting.drain(..) {
            let admissible = batch.len() < self.max_batch
                && (trees.contains(&waiter.root)
                    || state.busy.get(&waiter.root).copied().unwrap_or(0) < self.per_root);
            if !admissible {
                left.push_back(waiter);
                continue;
            }
            if trees.insert(waiter.root.clone()) {
                *state.busy.entry(waiter.root.clone()).or_default() += 1;
            }
            batch.push(waiter);
        }
        state.waiting = left;
        if batch.is_empty() {
            state.leaders -= 1;
            return None;
        }
        Some((batch, trees.into_iter().collect()))
    }

    /// A batch touching `trees` ended.
    fn done(&self, trees: Vec<BudgetId>) {
        let mut state = self.state();
        for tree in trees {
            if let Some(n) = state.busy.get_mut(&tree) {
                *n -= 1;
                if *n == 0 {
                    state.busy.remove(&tree);
                }
            }
        }
    }
}

/// A leader: runs batches until no waiting write is admissible.
async fn lead(gate: Arc<Gate>, runner: Arc<dyn Runner>) {
    while let Some((waiters, trees)) = gate.next_batch() {
        let (cmds, replies): (Vec<_>, Vec<_>) = waiters
            .into_iter()
            .map(|w| ((w.cmd, w.now), w.reply))
            .unzip();
        let answers = runner.run(cmds).await;
        gate.done(trees);
        for (reply, answer) in replies.into_iter().zip(answers) {
            // A caller that stopped waiting no longer needs its answer.
            let _ = reply.send(answer);
        }
    }
}

fn one(answers: Answers) -> tokenbudget_core::Result<Answer> {
    answers.into_iter().next().unwrap_or_else(|| {
        Err(tokenbudget_core::Error::storage(
            "postgres",
            false,
            "a batch of one returned no answer",
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;
    use tokenbudget_core::rules::RollbackCommand;
    use tokenbudget_core::{Reservation, ReservationState, RollbackOutcome};
    use tokio::sync::Semaphore;

    fn budget(id: &str, parent: Option<&str>) -> Budget {
        Budget {
            id: BudgetId::new(id).unwrap(),
            parent: parent.map(|p| BudgetId::new(p).unwrap()),
            limit: 100,
            used: 0,
            reserved: 0,
            held: 0,
            created_at: Timestamp::from_micros(0),
            unit: tokenbudget_core::Unit::Tokens,
            period: None,
            window_start: None,
            closed: false,
        }
    }

    fn id(s: &str) -> BudgetId {
        BudgetId::new(s).unwrap()
    }

    fn rollback(n: u128) -> Cmd {
        Cmd::Rollback(RollbackCommand {
            reservation_id: ReservationId::from_uuid(uuid::Uuid::from_u128(n)),
        })
    }

    /// Answers every command after a permit, recording batch sizes, the commands of each
    /// batch, the most batches that ran at once, and the most that ran at once with a command
    /// of each tree (the tree of rollback `n` is `n / 100` in these tests).
    #[derive(Default)]
    struct Recorder {
        sizes: Mutex<Vec<usize>>,
        batches: Mutex<Vec<Vec<u128>>>,
        running: AtomicUsize,
        most: AtomicUsize,
        per_tree: Mutex<HashMap<u128, (usize, usize)>>,
        go: Option<Arc<Semaphore>>,
    }

    fn trees_of(cmds: &[(Cmd, Timestamp)]) -> HashSet<u128> {
        cmds.iter()
            .map(|(cmd, _)| match cmd {
                Cmd::Rollback(cmd) => cmd.reservation_id.as_uuid().as_u128() / 100,
                _ => unreachable!("the tests queue rollbacks"),
            })
            .collect()
    }

    #[async_trait]
    impl Runner for Recorder {
        async fn run(&self, cmds: Vec<(Cmd, Timestamp)>) -> Answers {
            let running = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(running, Ordering::SeqCst);
            self.sizes.lock().unwrap().push(cmds.len());
            self.batches.lock().unwrap().push(
                cmds.iter()
                    .map(|(cmd, _)| match cmd {
                        Cmd::Rollback(cmd) => cmd.reservation_id.as_uuid().as_u128(),
                        _ => unreachable!("the tests queue rollbacks"),
                    })
                    .collect(),
            );
            let trees = trees_of(&cmds);
            for tree in &trees {
                let mut per_tree = self.per_tree.lock().unwrap();
                let (now, most) = per_tree.entry(*tree).or_default();
                *now += 1;
                *most = (*most).max(*now);
            }
            if let Some(go) = &self.go {
                go.acquire().await.unwrap().forget();
            }
            for tree in &trees {
                self.per_tree.lock().unwrap().get_mut(tree).unwrap().0 -= 1;
            }
            self.running.fetch_sub(1, Ordering::SeqCst);
            cmds.into_iter()
                .map(|(cmd, _)| {
                    let Cmd::Rollback(cmd) = cmd else {
                        unreachable!("the tests queue rollbacks")
                    };
                    Ok(Answer::Rollback(RollbackOutcome {
                        reservation: Reservation {
                            id: cmd.reservation_id,
                            budget_id: id("wf"),
                            tokens: 1,
                            state: ReservationState::Released,
                            created_at: Timestamp::from_micros(0),
                            expires_at: Timestamp::from_micros(1),
                            idempotency_key: None,
                            actual: None,
                            settled_at: None,
                            model: None,
                        },
                        released: 1,
                    }))
                })
                .collect()
        }
    }

    fn answered(answer: tokenbudget_core::Result<Answer>) -> ReservationId {
        match answer {
            Ok(Answer::Rollback(outcome)) => outcome.reservation.id,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn queued_writes_on_a_tree_run_in_bounded_batches_answered_in_order() {
        let gate = Arc::new(Gate::new(1, 3, 8));
        gate.learn([budget("wf", None), budget("wf:a", Some("wf"))].iter());
        let go = Arc::new(Semaphore::new(0));
        let recorder = Arc::new(Recorder {
            go: Some(go.clone()),
            ..Recorder::default()
        });
        let runner: Arc<dyn Runner> = recorder.clone();
        let wf = id("wf:a");
        let calls: Vec<_> = (0..8u128)
            .map(|n| {
                let (gate, runner, wf) = (gate.clone(), runner.clone(), wf.clone());
                tokio::spawn(async move {
                    let target = Target::Budget(&wf);
                    let answer = gate.run(&runner, target, rollback(n), Timestamp::EPOCH);
                    (n, answered(answer.await))
                })
            })
            .collect();
        // Let every call queue behind the first batch, which holds at its start.
        while recorder.sizes.lock().unwrap().is_empty() {
            tokio::task::yield_now().await;
        }
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        go.add_permits(100);
        for call in calls {
            let (n, got) = call.await.unwrap();
            assert_eq!(got, ReservationId::from_uuid(uuid::Uuid::from_u128(n)));
        }
        let sizes = recorder.sizes.lock().unwrap().clone();
        assert_eq!(sizes.iter().sum::<usize>(), 8, "{sizes:?}");
        assert!(
            sizes.iter().all(|&n| n <= 3),
            "a batch past max_batch: {sizes:?}"
        );
        assert!(sizes.len() < 8, "nothing was batched: {sizes:?}");
        assert_eq!(
            recorder.most.load(Ordering::SeqCst),
            1,
            "one leader per tree"
        );
        let state = gate.state();
        assert!(
            state.waiting.is_empty() && state.busy.is_empty() && state.leaders == 0,
            "a finished gate keeps state: {state:?}"
        );
    }

    #[tokio::test]
    async fn unknown_trees_and_a_gate_of_zero_run_alone_at_once() {
        for gate in [Gate::new(2, 64, 8), Gate::new(0, 64, 8)] {
            let gate = Arc::new(gate);
            gate.learn([budget("known", None)].iter());
            let recorder = Arc::new(Recorder::default());
            let runner: Arc<dyn Runner> = recorder.clone();
            let unknown = id("unknown");
            let r = ReservationId::from_uuid(uuid::Uuid::from_u128(9));
            for target in [Target::Budget(&unknown), Target::Reservation(r)] {
                let answer = gate.run(&runner, target, rollback(9), Timestamp::EPOCH);
                assert_eq!(answered(answer.await), r);
            }
            assert_eq!(*recorder.sizes.lock().unwrap(), [1, 1]);
            assert!(gate.state().waiting.is_empty() && gate.state().leaders == 0);
        }
    }

    #[tokio::test]
    async fn reservations_are_keyed_by_the_tree_that_granted_them() {
        let gate = Arc::new(Gate::new(1, 64, 8));
        gate.learn([budget("wf", None), budget("phase", Some("wf"))].iter());
        let r = ReservationId::from_uuid(uuid::Uuid::from_u128(7));
        gate.granted(r, &id("phase"));
        assert_eq!(gate.state().held.get(&r), Some(&id("wf")));
        gate.settled(r);
        assert!(gate.state().held.is_empty());
    }

    #[tokio::test]
    async fn a_caller_that_stops_waiting_leaves_the_write_to_finish() {
        let gate = Arc::new(Gate::new(1, 64, 8));
        gate.learn([budget("wf", None)].iter());
        let go = Arc::new(Semaphore::new(0));
        let recorder = Arc::new(Recorder {
            go: Some(go.clone()),
            ..Recorder::default()
        });
        let runner: Arc<dyn Runner> = recorder.clone();
        let wf = id("wf");
        let call = gate.run(&runner, Target::Budget(&wf), rollback(1), Timestamp::EPOCH);
        assert!(tokio::time::timeout(Duration::from_millis(10), call)
            .await
            .is_err());
        go.add_permits(1);
        while gate.state().leaders > 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(*recorder.sizes.lock().unwrap(), [1]);
    }

    /// Queues rollback `n` for every `n` of `ids` (each granted on tree `t{n / 100}`), each in
    /// a task of its own, and lets `go` release one batch at a time until all are answered.
    async fn run_queued(gate: &Arc<Gate>, recorder: &Arc<Recorder>, go: &Semaphore, ids: &[u128]) {
        let runner: Arc<dyn Runner> = recorder.clone();
        let calls: Vec<_> = ids
            .iter()
            .map(|&n| {
                let r = ReservationId::from_uuid(uuid::Uuid::from_u128(n));
                gate.granted(r, &id(&format!("t{}", n / 100)));
                let (gate, runner) = (gate.clone(), runner.clone());
                tokio::spawn(async move {
                    let answer = gate.run(
                        &runner,
                        Target::Reservation(r),
                        rollback(n),
                        Timestamp::EPOCH,
                    );
                    assert_eq!(answered(answer.await), r);
                })
            })
            .collect();
        while recorder.sizes.lock().unwrap().is_empty() {
            tokio::task::yield_now().await;
        }
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        for call in calls {
            while !call.is_finished() {
                go.add_permits(1);
                for _ in 0..10 {
                    tokio::task::yield_now().await;
                }
            }
            call.await.unwrap();
        }
    }

    #[tokio::test]
    async fn writes_on_different_trees_share_a_batch_within_the_per_tree_and_leader_limits() {
        let gate = Arc::new(Gate::new(1, 64, 2));
        gate.learn(
            (0..4)
                .map(|t| budget(&format!("t{t}"), None))
                .collect::<Vec<_>>()
                .iter(),
        );
        let go = Arc::new(Semaphore::new(0));
        let recorder = Arc::new(Recorder {
            go: Some(go.clone()),
            ..Recorder::default()
        });
        // Two writes on each of four trees, and four more on tree 0.
        let ids: Vec<u128> = (0..4)
            .flat_map(|t| [t * 100, t * 100 + 1])
            .chain(2..6)
            .collect();
        run_queued(&gate, &recorder, &go, &ids).await;
        let batches = recorder.batches.lock().unwrap().clone();
        let mut all: Vec<u128> = batches.concat();
        all.sort_unstable();
        let mut want = ids.clone();
        want.sort_unstable();
        assert_eq!(all, want, "every write ran exactly once: {batches:?}");
        assert!(
            batches
                .iter()
                .any(|b| b.iter().map(|n| n / 100).collect::<HashSet<_>>().len() > 1),
            "no batch spanned trees: {batches:?}"
        );
        assert!(
            recorder.most.load(Ordering::SeqCst) <= 2,
            "more leaders than max_batches"
        );
        let per_tree = recorder.per_tree.lock().unwrap();
        assert!(
            per_tree.values().all(|&(now, most)| now == 0 && most == 1),
            "a tree in two batches at once with root_concurrency 1: {per_tree:?}"
        );
        let state = gate.state();
        assert!(state.waiting.is_empty() && state.busy.is_empty() && state.leaders == 0);
    }
}
