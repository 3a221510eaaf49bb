//! The usage endpoints: the ledger sums in SQL ([`UsageStore::aggregate`]), [`crate::usage`]
//! folds and prices.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use tokenbudget_ledger::{AggregateQuery, AggregateRow, DynUsageStore, GroupBy};

use crate::api::ApiError;
use crate::usage::{self, By, Range};
use crate::Dashboard;

/// The query string every usage endpoint takes.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UsageParams {
    pub since: Option<String>,
    pub until: Option<String>,
    pub range: Option<String>,
    pub tz: Option<String>,
    pub project: Option<String>,
    pub model: Option<String>,
    pub budget: Option<String>,
    pub session: Option<String>,
    pub by: Option<String>,
    pub limit: Option<usize>,
    token: Option<String>,
}

impl From<tokenbudget_ledger::Error> for ApiError {
    fn from(e: tokenbudget_ledger::Error) -> Self {
        match e {
            tokenbudget_ledger::Error::Invalid { .. } => ApiError::bad_request(e.to_string()),
            other => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ledger_unavailable",
                other.to_string(),
            ),
        }
    }
}

fn ledger(d: &Dashboard) -> Result<&DynUsageStore, ApiError> {
    d.usage.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no_ledger",
            "this dashboard has no usage ledger".to_owned(),
        )
    })
}

impl UsageParams {
    fn range(&self, d: &Dashboard) -> Result<Range, ApiError> {
        let _ = &self.token;
        Range::parse(
            self.since.as_deref(),
            self.until.as_deref(),
            self.range.as_deref(),
            self.tz.as_deref(),
            d.clock.now().as_micros(),
        )
        .map_err(|e| ApiError::bad_request(e.0))
    }

    /// The ledger query over the range and filters, summed in `bucket_seconds` buckets and
    /// grouped by model (costs need it) and the price table's tiers.
    fn query(&self, d: &Dashboard, range: &Range, bucket_seconds: u32) -> AggregateQuery {
        let nonempty = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
        AggregateQuery {
            since: Some(range.start()),
            until: Some(range.end()),
            project: nonempty(&self.project),
            model: nonempty(&self.model),
            budget: nonempty(&self.budget),
            session: nonempty(&self.session),
            bucket_seconds,
            group: GroupBy {
                model: true,
                ..GroupBy::default()
            },
            prompt_tiers: d.pricer.tiers().to_vec(),
        }
    }

    fn refuse(&self, what: &str, given: bool) -> Result<(), ApiError> {
        if given {
            return Err(ApiError::bad_request(format!(
                "{what} is not a parameter of this endpoint"
            )));
        }
        Ok(())
    }
}

async fn sums(d: &Dashboard, query: &AggregateQuery) -> Result<Vec<AggregateRow>, ApiError> {
    Ok(ledger(d)?.aggregate(query).await?)
}

fn range_json(range: &Range) -> serde_json::Value {
    json!({
        "since": range.since.to_string(),
        "until": range.until.to_string(),
        "tz": range.zone_name,
        "start": range.start() / 1_000_000,
        "end": range.end() / 1_000_000,
    })
}

/// `GET /api/usage`: every day of the range (tokens by kind, cost), the totals per model,
/// the whole, and the stacked chart series.
pub(crate) async fn daily(
    State(d): State<Dashboard>,
    query: Result<Query<UsageParams>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(p) = query?;
    p.refuse("by", p.by.is_some())?;
    p.refuse("limit", p.limit.is_some())?;
    let range = p.range(&d)?;
    let rows = sums(&d, &p.query(&d, &range, range.bucket_seconds())).await?;
    let days = usage::daily(&rows, &range, &d.pricer);
    let models = usage::groups(&rows, By::Model, &d.pricer, usize::MAX);
    let mut total = usage::Totals::default();
    for day in &days {
        total.add_totals(&day.totals);
    }
    let chart = usage::stacked(&days);
    Ok(Json(json!({
        "range": range_json(&range),
        "days": days,
        "models": models,
        "total": total,
        "chart": chart,
    })))
}

/// `GET /api/usage/top?by=session|project|model&limit=N`: the groups that cost the most.
pub(crate) async fn top(
    State(d): State<Dashboard>,
    query: Result<Query<UsageParams>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(p) = query?;
    let by = match p.by.as_deref().unwrap_or("session") {
        "session" => By::Session,
        "project" => By::Project,
        "model" => By::Model,
        other => {
            return Err(ApiError::bad_request(format!(
                "by: {other:?} is not session, project or model"
            )))
        }
    };
    let limit = crate::api::page_limit(p.limit, 10)?;
    let range = p.range(&d)?;
    let mut query = p.query(&d, &range, 0);
    query.group.project = by != By::Model;
    query.group.session = by == By::Session;
    let rows = sums(&d, &query).await?;
    let groups = usage::groups(&rows, by, &d.pricer, limit);
    Ok(Json(json!({
        "range": range_json(&range),
        "by": p.by.as_deref().unwrap_or("session"),
        "groups": groups,
    })))
}

/// `GET /api/usage/blocks`: Claude's 5-hour blocks in the range, oldest first.
pub(crate) async fn blocks(
    State(d): State<Dashboard>,
    query: Result<Query<UsageParams>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(p) = query?;
    p.refuse("by", p.by.is_some())?;
    p.refuse("limit", p.limit.is_some())?;
    let range = p.range(&d)?;
    let rows = sums(&d, &p.query(&d, &range, 3_600)).await?;
    Ok(Json(json!({
        "range": range_json(&range),
        "blocks": usage::blocks(&rows, &d.pricer),
    })))
}
