//! A small reference model of the tracker, written independently of [`rules`](crate::rules):
//! plain vectors, linear scans, the behaviour as the documentation states it.

use crate::model::MAX_TOKENS;

/// One step of a generated operation sequence.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    Create {
        name: usize,
        parent: Option<usize>,
        limit: u64,
        /// A fixed period in seconds, anchored at the creation time.
        period_secs: Option<u64>,
    },
    Update {
        budget: usize,
        limit: Option<u64>,
        closed: Option<bool>,
    },
    Reserve {
        budget: usize,
        tokens: u64,
        timeout_secs: u64,
        key: Option<usize>,
    },
    Commit {
        res: usize,
        actual: u64,
    },
    Rollback {
        res: usize,
    },
    Extend {
        res: usize,
        timeout_secs: u64,
    },
    Charge {
        budget: usize,
        tokens: u64,
        key: usize,
    },
    Advance {
        secs: u64,
    },
    Sweep,
}

/// Budget names the generator picks from; the last is invalid.
pub(crate) const NAMES: [&str; 7] = ["w0", "w1", "p0", "p1", "p2", "q", "bad id"];

/// What an operation answered, normalized so the model and a store can be compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    Created,
    Granted {
        res: usize,
        tokens: u64,
        replayed: bool,
    },
    Refused {
        budget: String,
        requested: u64,
        available: u64,
        closed: bool,
    },
    Updated {
        limit: u64,
        closed: bool,
    },
    Committed {
        actual: u64,
        overrun: u64,
        late: bool,
        replayed: bool,
    },
    RolledBack {
        released: u64,
        state: &'static str,
    },
    Extended {
        /// Microseconds after the start.
        expires: u64,
    },
    Charged {
        overrun: u64,
        replayed: bool,
    },
    Swept(usize),
    Err(&'static str),
}

#[derive(Debug, Clone)]
pub(crate) struct MBudget {
    pub name: usize,
    pub parent: Option<usize>,
    pub limit: u64,
    /// Used in the current window (all time for a budget with no period).
    pub used: u64,
    pub reserved: u64,
    pub held: u64,
    pub closed: bool,
    /// `(length, start of the current window)` in microseconds, for a periodic budget.
    pub period: Option<(u64, u64)>,
}

#[derive(Debug, Clone)]
pub(crate) struct MRes {
    pub budget: usize,
    pub tokens: u64,
    pub state: &'static str,
    pub expires: u64,
    pub key: Option<usize>,
    pub actual: Option<u64>,
    pub late: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct MCharge {
    pub key: usize,
    pub budget: usize,
    pub tokens: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Model {
    pub now: u64,
    pub budgets: Vec<MBudget>,
    /// Every reservation ever granted, in grant order (the index is its identity).
    pub res: Vec<MRes>,
    pub charges: Vec<MCharge>,
}

impl Model {
    fn find(&self, name: usize) -> Option<usize> {
        self.budgets.iter().position(|b| b.name == name)
    }

    /// Indices of `b` and its ancestors.
    fn chain(&self, b: usize) -> Vec<usize> {
        let mut out = vec![b];
        while let Some(p) = self.budgets[*out.last().unwrap()].parent {
            out.push(p);
        }
        out
    }

    fn release(&mut self, r: usize, state: &'static str) {
        for b in self.chain(self.res[r].budget) {
            self.budgets[b].reserved -= self.res[r].tokens;
            self.budgets[b].held -= 1;
        }
        self.res[r].state = state;
    }

    /// Every periodic budget whose window ended starts its current window with nothing
    /// used: done eagerly here, where the stores do it lazily in the next write that loads
    /// the budget. Answers and live statuses cannot tell the two apart; only the log can
    /// (one `BUDGET_RESET` per rollover), and replay checks that.
    fn roll_over(&mut self) {
        let now = self.now;
        for b in &mut self.budgets {
            if let Some((len, start)) = &mut b.period {
                if now >= *start + *len {
                    *start += (now - *start) / *len * *len;
                    b.used = 0;
                }
            }
        }
    }

    fn root(&self, b: usize) -> usize {
        *self.chain(b).last().unwrap()
    }

    /// Releases the due holds made anywhere in `b`'s tree: every one of them counts on the
    /// tree's root, so any of them could refuse a grant.
    fn expire_tree(&mut self, b: usize) {
        let root = self.root(b);
        for r in 0..self.res.len() {
            if self.res[r].state == "held"
                && self.res[r].expires <= self.now
                && self.root(self.res[r].budget) == root
            {
                self.release(r, "expired");
            }
        }
    }

    /// `(used, reserved, held)` of budget `b` as a live status shows it: due holds made on it
    /// or below it left out.
    pub fn live(&self, b: usize) -> (u64, u64, u64) {
        let x = &self.budgets[b];
        let (mut reserved, mut held) = (x.reserved, x.held);
        for r in &self.res {
            if r.state == "held" && r.expires <= self.now && self.chain(r.budget).contains(&b) {
                reserved -= r.tokens;
                held -= 1;
            }
        }
        (x.used, reserved, held)
    }

    fn would_overflow(&self, chain: &[usize], tokens: u64) -> bool {
        chain
            .iter()
            .any(|&c| self.budgets[c].used as u128 + tokens as u128 > MAX_TOKENS as u128)
    }

    pub fn apply(&mut self, op: &Op) -> Answer {
        self.roll_over();
        let valid_name = |n: usize| NAMES[n] != "bad id";
        match *op {
            Op::Update {
                budget,
                limit,
                closed,
            } => {
                if !valid_name(budget) {
                    return Answer::Err("InvalidBudgetId");
                }
                if limit.is_some_and(|l| l == 0 || l > MAX_TOKENS) {
                    return Answer::Err("InvalidAmount");
                }
                let Some(b) = self.find(budget) else {
                    return Answer::Err("BudgetNotFound");
                };
                let x = &mut self.budgets[b];
                x.limit = limit.unwrap_or(x.limit);
                x.closed = closed.unwrap_or(x.closed);
                Answer::Updated {
                    limit: x.limit,
                    closed: x.closed,
                }
            }
            Op::Create {
                name,
                parent,
                limit,
                period_secs,
            } => {
                if !valid_name(name) || parent.is_some_and(|p| !valid_name(p)) {
                    return Answer::Err("InvalidBudgetId");
                }
                if limit == 0 || limit > MAX_TOKENS {
                    return Answer::Err("InvalidAmount");
                }
                if self.find(name).is_some() {
                    return Answer::Err("BudgetExists");
                }
                let parent = match parent {
                    None => None,
                    Some(p) => match self.find(p) {
                        Some(i) => Some(i),
                        None => return Answer::Err("ParentNotFound"),
                    },
                };
                self.budgets.push(MBudget {
                    name,
                    parent,
                    limit,
                    used: 0,
                    reserved: 0,
                    held: 0,
                    closed: false,
                    period: period_secs.map(|secs| (secs * 1_000_000, self.now)),
                });
                Answer::Created
            }
            Op::Reserve {
                budget,
                tokens,
                timeout_secs,
                key,
            } => {
                if !valid_name(budget) {
                    return Answer::Err("InvalidBudgetId");
                }
                if tokens == 0 || tokens > MAX_TOKENS {
                    return Answer::Err("InvalidAmount");
                }
                if timeout_secs == 0 {
                    return Answer::Err("InvalidTimeout");
                }
                if let Some(k) = key {
                    if let Some(r) = self.res.iter().position(|r| r.key == Some(k)) {
                        let same_budget = self.find(budget) == Some(self.res[r].budget);
                        if !same_budget || self.res[r].tokens != tokens {
                            return Answer::Err("IdempotencyConflict");
                        }
                        self.expire_tree(self.res[r].budget);
                        return Answer::Granted {
                            res: r,
                            tokens,
                            replayed: true,
                        };
                    }
                }
                let Some(b) = self.find(budget) else {
                    return Answer::Err("BudgetNotFound");
                };
                let chain = self.chain(b);
                self.expire_tree(b);
                for &c in &chain {
                    let x = &self.budgets[c];
                    if x.closed
                        || x.used as u128 + x.reserved as u128 + tokens as u128 > x.limit as u128
                    {
                        return Answer::Refused {
                            budget: NAMES[x.name].to_owned(),
                            requested: tokens,
                            available: x.limit.saturating_sub(x.used.saturating_add(x.reserved)),
                            closed: x.closed,
                        };
                    }
                }
                for &c in &chain {
                    self.budgets[c].reserved += tokens;
                    self.budgets[c].held += 1;
                }
                self.res.push(MRes {
                    budget: b,
                    tokens,
                    state: "held",
                    expires: self.now + timeout_secs * 1_000_000,
                    key,
                    actual: None,
                    late: false,
                });
                Answer::Granted {
                    res: self.res.len() - 1,
                    tokens,
                    replayed: false,
                }
            }
            Op::Commit { res, actual } => {
                if actual > MAX_TOKENS {
                    return Answer::Err("InvalidAmount");
                }
                if res >= self.res.len() {
                    return Answer::Err("ReservationNotFound");
                }
                let chain = self.chain(self.res[res].budget);
                // A rejected command changes nothing, due holds included: decide first.
                let overflow = self.would_overflow(&chain, actual);
                let r = self.res[res].clone();
                let rejected = match r.state {
                    "committed" => r.actual != Some(actual),
                    "released" => true,
                    _ => overflow,
                };
                if !rejected {
                    self.expire_tree(r.budget);
                }
                let r = self.res[res].clone();
                match r.state {
                    "committed" if r.actual == Some(actual) => Answer::Committed {
                        actual,
                        overrun: actual.saturating_sub(r.tokens),
                        late: r.late,
                        replayed: true,
                    },
                    "committed" | "released" => Answer::Err("ReservationConflict"),
                    _ if overflow => Answer::Err("Overflow"),
                    state => {
                        let late = state == "expired";
                        for &c in &chain {
                            if !late {
                                self.budgets[c].reserved -= r.tokens;
                                self.budgets[c].held -= 1;
                            }
                            self.budgets[c].used += actual;
                        }
                        let m = &mut self.res[res];
                        (m.state, m.actual, m.late) = ("committed", Some(actual), late);
                        Answer::Committed {
                            actual,
                            overrun: actual.saturating_sub(r.tokens),
                            late,
                            replayed: false,
                        }
                    }
                }
            }
            Op::Rollback { res } => {
                if res >= self.res.len() {
                    return Answer::Err("ReservationNotFound");
                }
                if self.res[res].state != "committed" {
                    self.expire_tree(self.res[res].budget);
                }
                match self.res[res].state {
                    "held" => {
                        self.release(res, "released");
                        Answer::RolledBack {
                            released: self.res[res].tokens,
                            state: "released",
                        }
                    }
                    "committed" => Answer::Err("ReservationConflict"),
                    state => Answer::RolledBack { released: 0, state },
                }
            }
            Op::Extend { res, timeout_secs } => {
                if timeout_secs == 0 {
                    return Answer::Err("InvalidTimeout");
                }
                if res >= self.res.len() {
                    return Answer::Err("ReservationNotFound");
                }
                let r = &self.res[res];
                if r.state != "held" || r.expires <= self.now {
                    return Answer::Err("ReservationConflict");
                }
                self.expire_tree(self.res[res].budget);
                let r = &mut self.res[res];
                r.expires = r.expires.max(self.now + timeout_secs * 1_000_000);
                Answer::Extended { expires: r.expires }
            }
            Op::Charge {
                budget,
                tokens,
                key,
            } => {
                if !valid_name(budget) {
                    return Answer::Err("InvalidBudgetId");
                }
                if tokens > MAX_TOKENS {
                    return Answer::Err("InvalidAmount");
                }
                if let Some(c) = self.charges.iter().find(|c| c.key == key) {
                    return if NAMES[self.budgets[c.budget].name] == NAMES[budget]
                        && c.tokens == tokens
                    {
                        Answer::Charged {
                            overrun: 0,
                            replayed: true,
                        }
                    } else {
                        Answer::Err("ChargeConflict")
                    };
                }
                let Some(b) = self.find(budget) else {
                    return Answer::Err("BudgetNotFound");
                };
                let chain = self.chain(b);
                if self.would_overflow(&chain, tokens) {
                    return Answer::Err("Overflow");
                }
                self.expire_tree(b);
                let mut overrun = 0;
                for &c in &chain {
                    let x = &mut self.budgets[c];
                    let available = x.limit.saturating_sub(x.used.saturating_add(x.reserved));
                    overrun = overrun.max(tokens.saturating_sub(available));
                    x.used += tokens;
                }
                self.charges.push(MCharge {
                    key,
                    budget: b,
                    tokens,
                });
                Answer::Charged {
                    overrun,
                    replayed: false,
                }
            }
            Op::Advance { secs } => {
                self.now += secs * 1_000_000;
                self.roll_over();
                Answer::Created
            }
            Op::Sweep => {
                let due: Vec<usize> = (0..self.res.len())
                    .filter(|&r| self.res[r].state == "held" && self.res[r].expires <= self.now)
                    .collect();
                for &r in &due {
                    self.release(r, "expired");
                }
                Answer::Swept(due.len())
            }
        }
    }
}
