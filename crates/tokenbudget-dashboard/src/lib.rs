//! A read-only web dashboard over tokenbudget's budgets, open reservations and event log, and
//! the JSON API it reads.
//!
//! [`Dashboard::router`] serves:
//!
//! | path | what |
//! |---|---|
//! | `GET /dashboard` | the budget tree: limit, used, held and available as a bar, window and reset, closed/exhausted; the recent refusals and clamps; it refreshes itself every 2 s |
//! | `GET /dashboard/budgets/{id}` | one budget: its status, open reservations and events (paged) |
//! | `GET /dashboard/assets/…` | the page's script, style and chart library, compiled into the binary (no CDN) |
//! | `GET /api/budgets?after=ID&limit=N` | the budgets' live statuses in tree order, `depth` and `bar` (per mille) on each; paged by id |
//! | `GET /api/budgets/{id}` | one budget's live status |
//! | `GET /api/budgets/{id}/events?after=SEQ&limit=N` | its events after `SEQ`, oldest first |
//! | `GET /api/reservations?budget=ID&state=held&after=UUID&limit=N` | reservations in a subtree, by live state |
//! | `GET /api/usage?range=30d&tz=UTC` | usage from the ledger: every day of the range (`days`: `date`, `start`, tokens by kind, `total_tokens`, `cost_micro_usd`, `responses`, `unpriced_responses`), per model (`models`, most expensive first), the `total`, and the stacked `chart` series (`x`, `layers` bottom first, `cost_usd`) |
//! | `GET /api/usage/top?by=session&limit=10` | the groups that cost the most over the range, by `session` (`project/session`), `project` or `model` |
//! | `GET /api/usage/blocks` | Claude's 5-hour blocks in the range, oldest first (`start`, `end` in seconds, models, totals) |
//! | `GET /api/refusals?before=SEQ&limit=N` | recent refusals and clamps from the log (`RESERVE_REFUSED`, `RESERVE_CLAMPED`), newest first, with the budget, the amounts in its unit and a `text` line; `next` is the `before` of the next page |
//!
//! Every usage endpoint takes the range as `since=YYYY-MM-DD&until=YYYY-MM-DD` (both days
//! included; `until` defaults to today) or `range=Nd` (the `N` days ending `until`, 1 to 366;
//! defaults to 30d), days counted in `tz` (`UTC`, an offset like `+05:30`, an IANA name;
//! defaults to UTC), and the filters `project=` and `model=` (contains), `budget=` and
//! `session=` (exact). A budget's detail page charts `budget=ID`. Bad input is a 400 with
//! `{"error": "bad_request", "message": …}`; a dashboard built without a ledger answers 404
//! `no_ledger`. The ledger sums in SQL ([`UsageStore::aggregate`](tokenbudget_ledger::UsageStore::aggregate),
//! in 15-minute buckets, or whole days in UTC, grouped by model and long-context tier), and
//! [`usage`] folds the sums into days, blocks and groups and prices them with the price table
//! ([`Dashboard::with_prices`]), so no record is loaded into memory.
//!
//! # Note
//! Costs are rounded up once per group of one model, tier and bucket, where `tokenbudget
//! usage` rounds each response: the two can differ by under a micro-dollar per response.
//!
//! Every answer is JSON (or HTML) built from the stores' own reads; nothing here writes. Bound
//! to a loopback address it needs no credentials; bound anywhere else, [`Dashboard::serve`]
//! refuses to start without a token, and every request must then carry it (`Authorization:
//! Bearer …`, or `?token=` once, which sets a cookie for the page's own requests).

mod api;
mod page;
pub mod usage;
mod usage_api;
pub mod view;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt as _;
use axum::Router;
use subtle::ConstantTimeEq;
use tokenbudget_core::{Clock, DynBudgetStore, SystemClock};
use tokenbudget_ledger::DynUsageStore;
use tokenbudget_prices::PriceTable;

/// What can stop the dashboard from starting.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bound to a non-loopback address with no token.
    #[error(
        "the dashboard listens on {addr}, which is not a loopback address: give it a token \
         (--token or TOKENBUDGET_DASHBOARD_TOKEN) so only its holders can read the budgets"
    )]
    TokenRequired {
        /// The address.
        addr: SocketAddr,
    },
    /// A token shorter than 16 bytes.
    #[error("a dashboard token must be at least 16 characters")]
    WeakToken,
    /// The listener failed.
    #[error("serving the dashboard: {0}")]
    Io(#[from] std::io::Error),
}

/// The dashboard over one budget store and, optionally, a usage ledger.
#[derive(Debug, Clone)]
pub struct Dashboard {
    store: DynBudgetStore,
    usage: Option<DynUsageStore>,
    pricer: Arc<usage::Pricer>,
    clock: Arc<dyn Clock>,
    token: Option<Arc<str>>,
}

impl Dashboard {
    /// A dashboard over `store`, on the system clock, with no token.
    pub fn new(store: DynBudgetStore) -> Self {
        Self {
            store,
            usage: None,
            pricer: Arc::new(usage::Pricer::new(PriceTable::embedded())),
            clock: Arc::new(SystemClock),
            token: None,
        }
    }

    /// Shows the usage history of `ledger` (the page's usage section and `/api/usage…`).
    pub fn with_usage(mut self, ledger: DynUsageStore) -> Self {
        self.usage = Some(ledger);
        self
    }

    /// Prices usage with `table` (defaults to the embedded snapshot of `tokenbudget-prices`).
    pub fn with_prices(mut self, table: PriceTable) -> Self {
        self.pricer = Arc::new(usage::Pricer::new(table));
        self
    }

    /// Reads statuses as of this clock's `now` (tests inject a manual one).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Requires `token` on every request.
    pub fn with_token(mut self, token: impl Into<String>) -> Result<Self, Error> {
        let token = token.into();
        if token.len() < 16 {
            return Err(Error::WeakToken);
        }
        self.token = Some(token.into());
        Ok(self)
    }

    /// The routes, for serving alone or merging into another router (the gateway's).
    pub fn router(self) -> Router {
        let token = self.token.clone();
        let routes = Router::new()
            .route("/dashboard", get(page::index))
            .route("/dashboard/", get(page::index))
            .route("/dashboard/budgets/{id}", get(page::budget))
            .route("/dashboard/assets/{name}", get(page::asset))
            .route("/api/budgets", get(api::budgets))
            .route("/api/budgets/{id}", get(api::budget))
            .route("/api/budgets/{id}/events", get(api::events))
            .route("/api/reservations", get(api::reservations))
            .route("/api/refusals", get(api::refusals))
            .route("/api/usage", get(usage_api::daily))
            .route("/api/usage/top", get(usage_api::top))
            .route("/api/usage/blocks", get(usage_api::blocks))
            .with_state(self);
        match token {
            None => routes,
            Some(token) => routes.layer(axum::middleware::from_fn_with_state(token, require_token)),
        }
    }

    /// Whether this dashboard may listen on `addr`: off loopback it needs a token.
    pub fn check_listen(&self, addr: SocketAddr) -> Result<(), Error> {
        if !addr.ip().is_loopback() && self.token.is_none() {
            return Err(Error::TokenRequired { addr });
        }
        Ok(())
    }

    /// Serves the dashboard on `listener` until `shutdown` completes. A non-loopback address
    /// needs a token ([`Error::TokenRequired`]).
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        self.check_listen(listener.local_addr()?)?;
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await?;
        Ok(())
    }
}

const COOKIE: &str = "tokenbudget_dashboard";

/// Lets a request through when it carries the token: as a bearer token, in the cookie, or as
/// `?token=` (which answers with the cookie set, so the page's own requests carry it).
async fn require_token(State(token): State<Arc<str>>, request: Request, next: Next) -> Response {
    let matches = |given: &str| bool::from(given.as_bytes().ct_eq(token.as_bytes()));
    let headers = request.headers();
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().strip_prefix(COOKIE)?.strip_prefix('='))
        .any(matches);
    let query = request
        .uri()
        .query()
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|kv| kv.strip_prefix("token="))
        .is_some_and(matches);
    if bearer.is_some_and(matches) || cookie {
        return next.run(request).await;
    }
    if query {
        let mut response = next.run(request).await;
        let value = format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict");
        if let Ok(value) = header::HeaderValue::from_str(&value) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
        return response;
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        axum::Json(serde_json::json!({
            "error": "unauthorized",
            "message": "this dashboard needs its token: Authorization: Bearer <token>"
        })),
    )
        .into_response()
}
