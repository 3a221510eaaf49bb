//! [`Gateway`]: the shared state every route reads.

use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tokenbudget::TokenBudget;
use tokio::sync::Notify;
use tokio_util::task::TaskTracker;

use crate::config::Settings;
use crate::error::{Error, Result};
use crate::keys::DynKeyStore;
use crate::ledger::{LedgerSink, NoLedger};
use crate::routes;

/// The gateway: budgets, keys, settings, the upstream client and the settlement tasks.
/// Cheap to clone.
#[derive(Clone, Debug)]
pub struct Gateway {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub budgets: TokenBudget,
    pub keys: DynKeyStore,
    pub settings: Settings,
    pub http: reqwest::Client,
    pub ledger: Arc<dyn LedgerSink>,
    pub tasks: TaskTracker,
    pub metrics: PrometheusHandle,
    pub open_streams: AtomicI64,
    /// Requests admitted and not yet settled.
    pub unsettled: AtomicUsize,
    pub settled: Notify,
    /// Cancelled when the shutdown grace period is over: open streams end as cut.
    pub cut_streams: tokio_util::sync::CancellationToken,
    /// The settlement journal, when configured.
    pub journal: Option<Arc<crate::journal::Journal>>,
    /// Weighted tokens held by requests forwarded without the store, still running.
    pub open_held: AtomicU64,
    /// Callers authorized while the store was reachable, served from here while it is not
    /// (`on_store_error = "open"` only).
    pub callers: crate::auth::CallerCache,
    /// Local counts of translated requests, remembering each session's messages.
    pub counter: Arc<tokenbudget_translate::ChatCounter>,
}

impl Gateway {
    /// A gateway over `budgets` and `keys` with `settings` (validated here).
    ///
    /// # Errors
    /// [`Error::Config`] naming the setting that is invalid.
    pub fn new(budgets: TokenBudget, keys: DynKeyStore, settings: Settings) -> Result<Self> {
        Self::with_ledger(budgets, keys, settings, Arc::new(NoLedger))
    }

    /// As [`Gateway::new`], writing each response's ledger record to `ledger`.
    ///
    /// # Errors
    /// [`Error::Config`] naming the setting that is invalid.
    pub fn with_ledger(
        budgets: TokenBudget,
        keys: DynKeyStore,
        settings: Settings,
        ledger: Arc<dyn LedgerSink>,
    ) -> Result<Self> {
        settings.validate()?;
        settings.check_upstream_keys()?;
        let journal = match &settings.journal {
            Some(path) => Some(Arc::new(crate::journal::Journal::open(path).map_err(
                |e| Error::Config {
                    setting: "journal".into(),
                    reason: e.to_string(),
                },
            )?)),
            None => None,
        };
        let http = reqwest::Client::builder()
            .connect_timeout(settings.timeouts.connect)
            .pool_idle_timeout(std::time::Duration::from_secs(90))
            .build()
            .map_err(|e| Error::Config {
                setting: "upstream client".into(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            inner: Arc::new(Inner {
                budgets,
                keys,
                settings,
                http,
                ledger,
                tasks: TaskTracker::new(),
                metrics: crate::metrics::handle(),
                open_streams: AtomicI64::new(0),
                unsettled: AtomicUsize::new(0),
                settled: Notify::new(),
                cut_streams: tokio_util::sync::CancellationToken::new(),
                journal,
                open_held: AtomicU64::new(0),
                callers: crate::auth::CallerCache::default(),
                counter: Arc::default(),
            }),
        })
    }

    /// The budgets.
    pub fn budgets(&self) -> &TokenBudget {
        &self.inner.budgets
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// The routes, with this gateway as their state.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/v1/messages", post(routes::anthropic::messages))
            .route(
                "/v1/messages/count_tokens",
                post(routes::anthropic::count_tokens),
            )
            .route("/v1/chat/completions", post(routes::openai::chat))
            .route("/v1/models", get(routes::misc::models))
            .route("/healthz", get(routes::misc::healthz))
            .route("/readyz", get(routes::misc::readyz))
            .route("/metrics", get(routes::misc::metrics))
            .layer(tower_http::trace::TraceLayer::new_for_http())
            .with_state(self.clone())
    }

    /// How requests on `budget` for `model` are measured: its unit, and on a `usd` budget
    /// the model's price (an unknown model is refused here, before anything is forwarded).
    pub(crate) async fn meter(
        &self,
        budget: &tokenbudget::BudgetId,
        model: Option<&str>,
    ) -> Result<crate::meter::Meter> {
        let unit = self
            .inner
            .budgets
            .store()
            .budget(budget)
            .await?
            .ok_or_else(|| tokenbudget::CoreError::BudgetNotFound { id: budget.clone() })?
            .unit;
        crate::meter::Meter::new(
            unit,
            self.inner.settings.weights,
            self.inner.budgets.prices(),
            model,
        )
    }

    /// Settlements journaled and not yet replayed into the store (0 without a journal).
    pub fn journal_depth(&self) -> u64 {
        self.inner.journal.as_ref().map_or(0, |j| j.depth())
    }

    /// Replays the journal into the store now; returns how many entries were applied.
    ///
    /// # Errors
    /// [`Error::Store`] while the store is still unreachable (what was not replayed stays
    /// journaled).
    pub async fn replay_journal(&self) -> Result<usize> {
        match &self.inner.journal {
            Some(j) => {
                j.replay(
                    &self.inner.budgets,
                    self.inner.ledger.as_ref(),
                    self.inner.settings.timeouts.store,
                )
                .await
            }
            None => Ok(0),
        }
    }

    /// Requests admitted whose settlement has not finished.
    pub fn unsettled(&self) -> usize {
        self.inner.unsettled.load(Ordering::SeqCst)
    }

    /// Streams being relayed now.
    pub fn open_streams(&self) -> i64 {
        self.inner.open_streams.load(Ordering::SeqCst)
    }

    /// Waits until every admitted request has been settled.
    pub async fn settled(&self) {
        loop {
            let notified = self.inner.settled.notified();
            if self.unsettled() == 0 {
                return;
            }
            notified.await;
        }
    }
}
