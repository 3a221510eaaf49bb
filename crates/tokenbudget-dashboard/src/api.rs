//! The JSON API: thin handlers over the store's reads and [`crate::view`].

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use tokenbudget_core::{
    BudgetId, EventQuery, RecentQuery, ReservationId, ReservationQuery, ReservationState, Status,
    Unit,
};

use crate::view;
use crate::Dashboard;

/// At most this many rows in one answer; `limit` defaults to it too for budgets.
pub(crate) const MAX_PAGE: usize = 1000;

/// An API error: a status and a JSON body `{"error": kind, "message": …}`.
#[derive(Debug)]
pub(crate) struct ApiError(StatusCode, &'static str, String);

impl ApiError {
    pub(crate) fn new(status: StatusCode, kind: &'static str, message: String) -> Self {
        Self(status, kind, message)
    }
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self(StatusCode::BAD_REQUEST, "bad_request", message.into())
    }
    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self(StatusCode::NOT_FOUND, "not_found", message.into())
    }
}

impl From<tokenbudget_core::Error> for ApiError {
    fn from(e: tokenbudget_core::Error) -> Self {
        if e.is_rejection() {
            Self::bad_request(e.to_string())
        } else {
            Self(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                e.to_string(),
            )
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        Self::bad_request(e.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let Self(status, kind, message) = self;
        (status, Json(json!({"error": kind, "message": message}))).into_response()
    }
}

pub(crate) fn budget_id(text: &str) -> Result<BudgetId, ApiError> {
    BudgetId::new(text).map_err(|e| ApiError::bad_request(e.to_string()))
}

pub(crate) fn page_limit(limit: Option<usize>, default: usize) -> Result<usize, ApiError> {
    match limit.unwrap_or(default) {
        0 => Err(ApiError::bad_request("limit must be at least 1")),
        n if n > MAX_PAGE => Err(ApiError::bad_request(format!(
            "limit must be at most {MAX_PAGE}"
        ))),
        n => Ok(n),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Paging {
    after: Option<String>,
    limit: Option<usize>,
    token: Option<String>,
}

/// The budgets in tree order, a page of them: `{"now", "budgets": [...], "next": ID|null}`.
pub(crate) async fn budgets(
    State(d): State<Dashboard>,
    query: Result<Query<Paging>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(q) = query?;
    let _ = q.token;
    let limit = page_limit(q.limit, MAX_PAGE)?;
    let after = q.after.as_deref().map(budget_id).transpose()?;
    let (rows, next) = budget_page(&d, after.as_ref(), limit).await?;
    Ok(Json(json!({
        "now": d.clock.now(),
        "budgets": rows,
        "next": next,
    })))
}

/// A page of the tree: the statuses with ids after `after`, at most `limit`, and the id to
/// continue after when there are more.
pub(crate) async fn budget_page(
    d: &Dashboard,
    after: Option<&BudgetId>,
    limit: usize,
) -> Result<(Vec<view::Row>, Option<BudgetId>), ApiError> {
    let mut statuses: Vec<Status> = d.store.statuses(d.clock.now()).await?;
    statuses.sort_by(|a, b| a.id.cmp(&b.id));
    let start = after.map_or(0, |a| statuses.partition_point(|s| &s.id <= a));
    let page: Vec<Status> = statuses.iter().skip(start).take(limit).cloned().collect();
    let next = (start + page.len() < statuses.len())
        .then(|| page.last().map(|s| s.id.clone()))
        .flatten();
    Ok((view::tree(page), next))
}

/// One budget's live status.
pub(crate) async fn budget(
    State(d): State<Dashboard>,
    Path(id): Path<String>,
) -> Result<Json<Status>, ApiError> {
    let id = budget_id(&id)?;
    d.store
        .status(&id, d.clock.now())
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("budget {id} not found")))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EventPaging {
    after: Option<u64>,
    limit: Option<usize>,
    token: Option<String>,
}

/// A budget's events after `after` (a sequence number), oldest first:
/// `{"events": [...], "next": SEQ|null}`.
pub(crate) async fn events(
    State(d): State<Dashboard>,
    Path(id): Path<String>,
    query: Result<Query<EventPaging>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(q) = query?;
    let _ = q.token;
    let id = budget_id(&id)?;
    let limit = page_limit(q.limit, 50)?;
    if d.store.budget(&id).await?.is_none() {
        return Err(ApiError::not_found(format!("budget {id} not found")));
    }
    let mut query = EventQuery::budget(id, q.after.unwrap_or(0));
    query.limit = limit;
    let events = d.store.events(query).await?;
    let next = (events.len() == limit)
        .then(|| events.last().map(|e| e.seq))
        .flatten();
    Ok(Json(json!({"events": events, "next": next})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReservationFilter {
    budget: Option<String>,
    state: Option<String>,
    after: Option<String>,
    limit: Option<usize>,
    token: Option<String>,
}

/// Reservations in a subtree by live state, by id: `{"reservations": [...], "next": UUID|null}`.
pub(crate) async fn reservations(
    State(d): State<Dashboard>,
    query: Result<Query<ReservationFilter>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(q) = query?;
    let _ = q.token;
    let limit = page_limit(q.limit, 100)?;
    let mut query = ReservationQuery::all(d.clock.now());
    query.budget_id = q.budget.as_deref().map(budget_id).transpose()?;
    query.state = q.state.as_deref().map(parse_state).transpose()?;
    query.after = q
        .after
        .as_deref()
        .map(|a| {
            a.parse::<ReservationId>()
                .map_err(|e| ApiError::bad_request(e.to_string()))
        })
        .transpose()?;
    query.limit = limit;
    let found = d.store.reservations(query).await?;
    let next = (found.len() == limit)
        .then(|| found.last().map(|r| r.id))
        .flatten();
    Ok(Json(json!({"reservations": found, "next": next})))
}

pub(crate) fn parse_state(text: &str) -> Result<ReservationState, ApiError> {
    serde_json::from_value(serde_json::Value::String(text.to_owned())).map_err(|_| {
        ApiError::bad_request(format!(
            "unknown state {text:?}: held, committed, released or expired"
        ))
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RefusalPaging {
    before: Option<u64>,
    limit: Option<usize>,
    token: Option<String>,
}

/// Recent refusals and clamps from the log, newest first: `{"refusals": [...], "next":
/// SEQ|null}` (`next` goes in `before` for the page after).
pub(crate) async fn refusals(
    State(d): State<Dashboard>,
    query: Result<Query<RefusalPaging>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(q) = query?;
    let _ = q.token;
    let limit = page_limit(q.limit, 50)?;
    let (rows, next) = refusal_page(&d, q.before, limit).await?;
    Ok(Json(json!({"refusals": rows, "next": next})))
}

/// A page of refusals and clamps before `before`, with the seq to continue before.
pub(crate) async fn refusal_page(
    d: &Dashboard,
    before: Option<u64>,
    limit: usize,
) -> Result<(Vec<view::Notice>, Option<u64>), ApiError> {
    let mut query = RecentQuery::refusals_and_clamps(limit);
    query.before = before;
    let events = d.store.recent_events(query).await?;
    // Each budget's unit, read once per budget of the page.
    let mut units: std::collections::HashMap<BudgetId, Unit> = std::collections::HashMap::new();
    let mut rows = Vec::with_capacity(events.len());
    for event in &events {
        let unit = match units.get(&event.budget_id) {
            Some(unit) => *unit,
            None => {
                let unit = d
                    .store
                    .budget(&event.budget_id)
                    .await?
                    .map_or(Unit::Tokens, |b| b.unit);
                units.insert(event.budget_id.clone(), unit);
                unit
            }
        };
        rows.extend(view::notice(event, unit));
    }
    let next = (events.len() == limit)
        .then(|| events.last().map(|e| e.seq))
        .flatten();
    Ok((rows, next))
}
