//! The HTML pages (askama templates, rendered on the server) and the bundled assets.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use tokenbudget_core::{Event, Reservation, ReservationQuery, ReservationState};

use crate::api::{budget_id, budget_page, refusal_page, ApiError, MAX_PAGE};
use crate::view::{self, Row};
use crate::Dashboard;

#[derive(Template)]
#[template(path = "index.html")]
struct Index {
    rows: Vec<Line>,
    more: bool,
    refusals: Vec<NoticeLine>,
    usage: bool,
    usage_budget: String,
}

/// A refusal or clamp as the index page lists it.
struct NoticeLine {
    seq: u64,
    at: String,
    kind: &'static str,
    budget: String,
    origin: String,
    requested: String,
    left: String,
    model: String,
}

impl From<&view::Notice> for NoticeLine {
    fn from(n: &view::Notice) -> Self {
        let a = |v| view::amount_with_unit(n.unit, v);
        Self {
            seq: n.seq,
            at: n.at.to_string(),
            kind: n.kind,
            budget: n.budget_id.as_str().to_owned(),
            origin: n.origin.as_str().to_owned(),
            requested: a(n.requested),
            left: match (n.available, n.granted, n.reason) {
                (_, _, Some(tokenbudget_core::RefusalReason::Closed)) => "closed".to_owned(),
                (Some(available), _, _) => format!("{} available", a(available)),
                (_, Some(granted), _) => format!("held {}", a(granted)),
                _ => String::new(),
            },
            model: n.model.clone().unwrap_or_default(),
        }
    }
}

/// How many refusals and clamps the index page lists.
pub(crate) const RECENT_REFUSALS: usize = 20;

#[derive(Template)]
#[template(path = "budget.html")]
struct Detail {
    line: Line,
    parent: String,
    held: Vec<Held>,
    events: Vec<EventLine>,
    usage: bool,
    usage_budget: String,
}

/// An open reservation as the detail page prints it.
struct Held {
    id: String,
    budget: String,
    amount: String,
    expires_at: String,
    model: String,
}

/// An event as the detail page prints it.
struct EventLine {
    seq: u64,
    at: String,
    kind: &'static str,
    json: String,
}

fn html(page: impl Template) -> Response {
    match page.render() {
        Ok(body) => Html(body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// `GET /dashboard`: the first page of the tree, rendered; the script keeps it fresh.
pub(crate) async fn index(State(d): State<Dashboard>) -> Result<Response, ApiError> {
    let (rows, next) = budget_page(&d, None, MAX_PAGE).await?;
    let (refusals, _) = refusal_page(&d, None, RECENT_REFUSALS).await?;
    Ok(html(Index {
        rows: rows.iter().map(Line::from).collect(),
        more: next.is_some(),
        refusals: refusals.iter().map(NoticeLine::from).collect(),
        usage: d.usage.is_some(),
        usage_budget: String::new(),
    }))
}

/// `GET /dashboard/budgets/{id}`: one budget, its open reservations and first events.
pub(crate) async fn budget(
    State(d): State<Dashboard>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = budget_id(&id)?;
    let now = d.clock.now();
    let Some(status) = d.store.status(&id, now).await? else {
        return Err(ApiError::not_found(format!("budget {id} not found")));
    };
    let mut query = ReservationQuery::all(now);
    query.budget_id = Some(id.clone());
    query.state = Some(ReservationState::Held);
    query.limit = 100;
    let held = d.store.reservations(query).await?;
    let mut events = tokenbudget_core::EventQuery::budget(id, 0);
    events.limit = 50;
    let events = d.store.events(events).await?;
    let unit = status.unit;
    let parent = status
        .parent
        .as_ref()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let row = view::tree(vec![status]).remove(0);
    Ok(html(Detail {
        usage: d.usage.is_some(),
        usage_budget: row.status.id.as_str().to_owned(),
        line: Line::from(&row),
        parent,
        held: held
            .into_iter()
            .map(|r: Reservation| Held {
                id: r.id.to_string(),
                budget: r.budget_id.as_str().to_owned(),
                amount: view::amount(unit, r.tokens),
                expires_at: r.expires_at.to_string(),
                model: r.model.unwrap_or_default(),
            })
            .collect(),
        events: events
            .into_iter()
            .map(|e: Event| EventLine {
                seq: e.seq,
                at: e.at.to_string(),
                kind: e.kind.type_name(),
                json: serde_json::to_string(&e.kind).unwrap_or_default(),
            })
            .collect(),
    }))
}

/// The page's files, compiled in: uPlot 1.6.32 from npm (MIT, `assets/uPlot.LICENSE`), the
/// script and the style.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.js",
        "text/javascript",
        include_str!("../assets/app.js"),
    ),
    ("style.css", "text/css", include_str!("../assets/style.css")),
    (
        "uPlot.iife.min.js",
        "text/javascript",
        include_str!("../assets/uPlot.iife.min.js"),
    ),
    (
        "uPlot.min.css",
        "text/css",
        include_str!("../assets/uPlot.min.css"),
    ),
    (
        "uPlot.LICENSE",
        "text/plain",
        include_str!("../assets/uPlot.LICENSE"),
    ),
];

/// `GET /dashboard/assets/{name}`.
pub(crate) async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, mime, body)) => (
            [
                (header::CONTENT_TYPE, *mime),
                (header::CACHE_CONTROL, "public, max-age=3600"),
            ],
            *body,
        )
            .into_response(),
        None => ApiError::not_found(format!("no asset {name:?}")).into_response(),
    }
}

/// A row as the templates print it: amounts already in their unit.
pub(crate) struct Line {
    pub id: String,
    pub depth: usize,
    pub limit: String,
    pub used: String,
    pub reserved: String,
    pub available: String,
    pub used_pm: u32,
    pub held_pm: u32,
    pub window: String,
    pub resets_at: String,
    pub closed: bool,
    pub exhausted: bool,
}

impl From<&Row> for Line {
    fn from(row: &Row) -> Self {
        let s = &row.status;
        let a = |v| view::amount(s.unit, v);
        Self {
            id: s.id.as_str().to_owned(),
            depth: row.depth,
            limit: a(s.limit),
            used: a(s.used),
            reserved: a(s.reserved),
            available: a(s.available),
            used_pm: row.bar.used,
            held_pm: row.bar.held,
            window: s.period.as_ref().map(|p| p.to_string()).unwrap_or_default(),
            resets_at: row.resets_at.map(|t| t.to_string()).unwrap_or_default(),
            closed: s.closed,
            exhausted: s.exhausted,
        }
    }
}
