//! The JSON API over a real server, on memory, SQLite and Postgres.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokenbudget_core::testkit::tracker;
use tokenbudget_core::{
    Clock, DynBudgetStore, ManualClock, MemoryStore, NewBudget, Period, ReserveOptions, Unit,
};
use tokenbudget_dashboard::Dashboard;
use tokenbudget_ledger::{DynUsageStore, Usage, UsageRecord};

struct Server {
    base: String,
    http: reqwest::Client,
}

impl Server {
    async fn start(dashboard: Dashboard) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(dashboard.serve(listener, std::future::pending()));
        Self {
            base,
            http: reqwest::Client::new(),
        }
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

/// 2026-12-01T00:00:00Z, in seconds.
const DEC1: i64 = 1_796_083_200;
const SONNET: &str = "claude-sonnet-4-20250514";
const HAIKU: &str = "claude-3-5-haiku-20241022";

#[allow(clippy::too_many_arguments)]
fn record(
    key: &str,
    model: &str,
    project: &str,
    session: &str,
    ts: i64,
    usage: Usage,
    budget: Option<&str>,
) -> UsageRecord {
    UsageRecord {
        key: key.into(),
        source: "claude-code".into(),
        machine: "m".into(),
        session_id: session.into(),
        project: project.into(),
        model: model.into(),
        timestamp: ts * 1_000_000,
        usage,
        raw_usage: "{}".into(),
        file: "/t/a.jsonl".into(),
        offset: 0,
        estimated: false,
        budget: budget.map(Into::into),
    }
}

fn tokens(input: u64, output: u64, cache_write_5m: u64, cache_read: u64) -> Usage {
    Usage {
        input,
        output,
        cache_write_5m,
        cache_read,
        ..Usage::default()
    }
}

/// Four responses on Dec 1, 2 and 4, two models, three sessions, two of them charged to
/// org:team.
fn ledger_records() -> Vec<UsageRecord> {
    vec![
        record(
            "k1",
            SONNET,
            "p1",
            "s1",
            DEC1 + 3_600,
            tokens(1_000, 500, 100, 2_000),
            None,
        ),
        record(
            "k2",
            HAIKU,
            "p1",
            "s2",
            DEC1 + 7_200,
            tokens(400, 100, 0, 0),
            Some("org:team"),
        ),
        record(
            "k3",
            SONNET,
            "p2",
            "s3",
            DEC1 + 86_400 + 25_200,
            tokens(3_000, 1_000, 0, 0),
            None,
        ),
        record(
            "k4",
            HAIKU,
            "p1",
            "s1",
            DEC1 + 3 * 86_400 + 3_600,
            tokens(10, 10, 0, 0),
            Some("org:team"),
        ),
    ]
}

/// What one record costs by the embedded price table, in micro-USD.
fn cost(r: &UsageRecord) -> u64 {
    let u = &r.usage;
    let usage = tokenbudget_prices::Usage {
        input: u.input,
        output: u.output,
        cache_write_5m: u.cache_write_5m,
        cache_write_1h: u.cache_write_1h,
        cache_read: u.cache_read,
    };
    tokenbudget_prices::PriceTable::embedded()
        .cost(&r.model, &usage)
        .unwrap()
        .micros()
}

/// Fills `store`: org (1000) > team (600) > alice (200); solo ($5/day, usd); a commit, a held
/// reservation, a closed budget; refusals and a clamp; and `ledger` with
/// [`ledger_records`]. Returns the server and the held reservation's id.
async fn filled(store: DynBudgetStore, ledger: DynUsageStore) -> (Server, String) {
    ledger.write(&ledger_records(), None).await.unwrap();
    let (t, clock) = tracker(store.clone());
    t.create_workflow("org", 1000).await.unwrap();
    t.create_phase("org:team", "org", 600).await.unwrap();
    t.create_phase("org:team:alice", "org:team", 200)
        .await
        .unwrap();
    let daily = Period::parse_parts("daily", Some("Europe/Berlin"), None).unwrap();
    store
        .create_budget(
            NewBudget::workflow(tokenbudget_core::BudgetId::new("solo").unwrap(), 5_000_000)
                .with_unit(Unit::Usd)
                .with_period(daily),
            clock.now(),
        )
        .await
        .unwrap();
    let done = t
        .reserve("org:team:alice", 150, ReserveOptions::new())
        .await
        .unwrap()
        .into_result()
        .unwrap();
    t.commit(done.reservation.id, 120).await.unwrap();
    let held = t
        .reserve(
            "org:team",
            300,
            ReserveOptions::new().with_timeout(Duration::from_secs(600)),
        )
        .await
        .unwrap()
        .into_result()
        .unwrap();
    t.close("solo").await.unwrap();
    // A refusal, a clamped grant (rolled back, so the numbers stay) and a closed refusal.
    let refused = t
        .reserve("org:team:alice", 500, ReserveOptions::new())
        .await
        .unwrap();
    assert!(refused.refused().is_some());
    let clamped = t
        .reserve(
            "org:team:alice",
            50,
            ReserveOptions::new().with_asked(500).with_model("m-1"),
        )
        .await
        .unwrap()
        .into_result()
        .unwrap();
    t.rollback(clamped.reservation.id).await.unwrap();
    assert!(t
        .reserve("solo", 1_000_000, ReserveOptions::new())
        .await
        .unwrap()
        .refused()
        .is_some());
    let clock: Arc<ManualClock> = clock;
    let server = Server::start(Dashboard::new(store).with_clock(clock).with_usage(ledger)).await;
    (server, held.reservation.id.to_string())
}

async fn the_api_answers_from_the_store(store: DynBudgetStore, ledger: DynUsageStore) {
    let (s, held) = filled(store, ledger).await;

    let (code, body) = s.get("/api/budgets").await;
    assert_eq!(code, 200, "{body}");
    let rows = body["budgets"].as_array().unwrap();
    let shape: Vec<(&str, u64, u64, u64, u64)> = rows
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap(),
                r["depth"].as_u64().unwrap(),
                r["used"].as_u64().unwrap(),
                r["reserved"].as_u64().unwrap(),
                r["available"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        shape,
        [
            ("org", 0, 120, 300, 580),
            ("org:team", 1, 120, 300, 180),
            ("org:team:alice", 2, 120, 0, 80),
            ("solo", 0, 0, 0, 5_000_000),
        ]
    );
    assert_eq!(rows[0]["bar"], json!({"used": 120, "held": 300}));
    assert_eq!(rows[1]["bar"], json!({"used": 200, "held": 500}));
    assert_eq!(body["next"], Value::Null);
    let solo = &rows[3];
    assert_eq!(
        (&solo["unit"], &solo["closed"], &solo["period"]),
        (
            &json!("usd"),
            &json!(true),
            &json!("daily tz=Europe/Berlin")
        )
    );
    assert_eq!(solo["resets_at"], solo["window"]["end"]);
    assert!(solo["resets_at"].as_str().unwrap().ends_with('Z'), "{solo}");

    // Pages by id: two, then the rest.
    let (_, first) = s.get("/api/budgets?limit=2").await;
    assert_eq!(first["budgets"].as_array().unwrap().len(), 2);
    assert_eq!(first["next"], "org:team");
    let (_, rest) = s.get("/api/budgets?after=org:team").await;
    let ids: Vec<&str> = rest["budgets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["org:team:alice", "solo"]);

    let (code, one) = s.get("/api/budgets/org:team").await;
    assert_eq!(
        (code, &one["reserved"], &one["parent"]),
        (200, &json!(300), &json!("org"))
    );

    let (_, open) = s.get("/api/reservations?budget=org&state=held").await;
    let open = open["reservations"].as_array().unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0]["id"], held.as_str());
    let (_, all) = s.get("/api/reservations?budget=org:team:alice").await;
    assert_eq!(all["reservations"][0]["state"], "committed");

    let (_, events) = s.get("/api/budgets/org:team:alice/events?limit=2").await;
    let types: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["BUDGET_CREATED", "TOKENS_RESERVED"]);
    let after = events["next"].as_u64().unwrap();
    let (_, later) = s
        .get(&format!("/api/budgets/org:team:alice/events?after={after}"))
        .await;
    assert_eq!(later["events"][0]["type"], "TOKENS_COMMITTED");
    assert_eq!(later["next"], Value::Null);

    // Refusals and clamps, newest first, with the budget, the amounts and the unit.
    let (code, body) = s.get("/api/refusals").await;
    assert_eq!(code, 200, "{body}");
    let rows = body["refusals"].as_array().unwrap();
    let shape: Vec<(&str, &str, u64, &Value, &Value, &str)> = rows
        .iter()
        .map(|r| {
            (
                r["kind"].as_str().unwrap(),
                r["budget_id"].as_str().unwrap(),
                r["requested"].as_u64().unwrap(),
                &r["available"],
                &r["granted"],
                r["unit"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        shape,
        [
            (
                "refused",
                "solo",
                1_000_000,
                &json!(5_000_000),
                &Value::Null,
                "usd"
            ),
            (
                "clamped",
                "org:team:alice",
                500,
                &Value::Null,
                &json!(50),
                "tokens"
            ),
            (
                "refused",
                "org:team:alice",
                500,
                &json!(80),
                &Value::Null,
                "tokens"
            ),
        ]
    );
    assert_eq!(rows[0]["reason"], "closed");
    assert_eq!(rows[0]["text"], "refused $1.00 on solo: solo is closed");
    assert_eq!(rows[1]["model"], "m-1");
    assert_eq!(body["next"], Value::Null);
    let (_, first) = s.get("/api/refusals?limit=2").await;
    let before = first["next"].as_u64().unwrap();
    assert_eq!(before, rows[1]["seq"].as_u64().unwrap());
    let (_, rest) = s
        .get(&format!("/api/refusals?limit=2&before={before}"))
        .await;
    assert_eq!(rest["refusals"].as_array().unwrap().len(), 1);
    assert_eq!(rest["refusals"][0]["seq"], rows[2]["seq"]);

    // Usage: every day of the range, tokens by kind and cost per day and per model.
    let records = ledger_records();
    let range = "since=2026-12-01&until=2026-12-05";
    let (code, u) = s.get(&format!("/api/usage?{range}")).await;
    assert_eq!(code, 200, "{u}");
    let days = u["days"].as_array().unwrap();
    let per_day: Vec<(&str, u64, u64, u64)> = days
        .iter()
        .map(|d| {
            (
                d["date"].as_str().unwrap(),
                d["input"].as_u64().unwrap(),
                d["cache_read"].as_u64().unwrap(),
                d["cost_micro_usd"].as_u64().unwrap(),
            )
        })
        .collect();
    let c: Vec<u64> = records.iter().map(cost).collect();
    assert!(c.iter().all(|&x| x > 0), "every model is priced: {c:?}");
    assert_eq!(
        per_day,
        [
            ("2026-12-01", 1_400, 2_000, c[0] + c[1]),
            ("2026-12-02", 3_000, 0, c[2]),
            ("2026-12-03", 0, 0, 0),
            ("2026-12-04", 10, 0, c[3]),
            ("2026-12-05", 0, 0, 0),
        ]
    );
    assert_eq!(days[0]["start"], DEC1);
    assert_eq!(days[0]["cache_write"], 100);
    assert_eq!(u["total"]["responses"], 4);
    assert_eq!(u["total"]["cost_micro_usd"], c.iter().sum::<u64>());
    assert_eq!(u["range"]["tz"], "UTC");
    let models: Vec<(&str, u64)> = u["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["key"].as_str().unwrap(),
                m["cost_micro_usd"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(models, [(SONNET, c[0] + c[2]), (HAIKU, c[1] + c[3])]);
    let chart = &u["chart"];
    assert_eq!(chart["x"].as_array().unwrap().len(), 5);
    assert_eq!(chart["layers"][3][0], "cache_read");
    assert_eq!(chart["layers"][3][1][0], 1_400 + 600 + 100 + 2_000);
    // One budget's usage over time; a zone moves the days' edges.
    let (_, team) = s.get(&format!("/api/usage?{range}&budget=org:team")).await;
    let inputs: Vec<u64> = team["days"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["input"].as_u64().unwrap())
        .collect();
    assert_eq!(inputs, [400, 0, 0, 10, 0]);
    let (_, la) = s
        .get("/api/usage?since=2026-11-30&until=2026-11-30&tz=America/Los_Angeles")
        .await;
    assert_eq!(
        la["days"][0]["input"], 1_400,
        "01:00Z and 02:00Z are Nov 30 in LA"
    );
    assert_eq!(la["range"]["tz"], "America/Los_Angeles");

    // The top sessions and projects by cost, and the 5-hour blocks.
    let (code, top) = s.get(&format!("/api/usage/top?by=session&{range}")).await;
    assert_eq!(code, 200, "{top}");
    let groups = top["groups"].as_array().unwrap();
    let mut want = vec![("p1/s1", c[0] + c[3]), ("p1/s2", c[1]), ("p2/s3", c[2])];
    want.sort_by_key(|w| std::cmp::Reverse(w.1));
    let got: Vec<(&str, u64)> = groups
        .iter()
        .map(|g| {
            (
                g["key"].as_str().unwrap(),
                g["cost_micro_usd"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, want);
    let s1 = groups.iter().find(|g| g["key"] == "p1/s1").unwrap();
    assert_eq!(s1["models"], json!([HAIKU, SONNET]));
    assert_eq!(
        (&s1["project"], &s1["session_id"]),
        (&json!("p1"), &json!("s1"))
    );
    let (_, one) = s
        .get(&format!("/api/usage/top?by=project&limit=1&{range}"))
        .await;
    assert_eq!(one["groups"].as_array().unwrap().len(), 1);
    let (_, blocks) = s.get(&format!("/api/usage/blocks?{range}")).await;
    let blocks: Vec<(i64, i64, u64)> = blocks["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["start"].as_i64().unwrap() - DEC1,
                b["end"].as_i64().unwrap() - DEC1,
                b["input"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        blocks,
        [
            (3_600, 6 * 3_600, 1_400),
            (86_400 + 25_200, 86_400 + 25_200 + 5 * 3_600, 3_000),
            (3 * 86_400 + 3_600, 3 * 86_400 + 6 * 3_600, 10),
        ]
    );

    // Bad input: a typed JSON error, never a panic.
    for (path, code, kind) in [
        ("/api/budgets/nope", 404, "not_found"),
        ("/api/budgets/nope/events", 404, "not_found"),
        ("/api/budgets/no%20spaces", 400, "bad_request"),
        ("/api/budgets?limit=0", 400, "bad_request"),
        ("/api/budgets?limit=100000", 400, "bad_request"),
        ("/api/budgets?bogus=1", 400, "bad_request"),
        ("/api/reservations?state=bogus", 400, "bad_request"),
        ("/api/reservations?after=not-a-uuid", 400, "bad_request"),
        ("/api/budgets/org/events?after=-1", 400, "bad_request"),
        ("/api/refusals?before=x", 400, "bad_request"),
        ("/api/refusals?limit=0", 400, "bad_request"),
        ("/api/refusals?kind=all", 400, "bad_request"),
        ("/api/usage?since=2026-13-01", 400, "bad_request"),
        ("/api/usage?until=yesterday", 400, "bad_request"),
        ("/api/usage?range=0d", 400, "bad_request"),
        ("/api/usage?range=7", 400, "bad_request"),
        ("/api/usage?range=400d", 400, "bad_request"),
        ("/api/usage?since=2026-12-01&range=7d", 400, "bad_request"),
        (
            "/api/usage?since=2026-12-05&until=2026-12-01",
            400,
            "bad_request",
        ),
        ("/api/usage?tz=Mars/Olympus", 400, "bad_request"),
        ("/api/usage?by=model", 400, "bad_request"),
        ("/api/usage?bogus=1", 400, "bad_request"),
        ("/api/usage/top?by=bogus", 400, "bad_request"),
        ("/api/usage/top?limit=0", 400, "bad_request"),
        ("/api/usage/blocks?tz=nowhere", 400, "bad_request"),
    ] {
        let (got, body) = s.get(path).await;
        assert_eq!(
            (got, body["error"].as_str()),
            (code, Some(kind)),
            "{path}: {body}"
        );
    }

    // The page itself: rendered on the server with the same numbers, assets bundled.
    let page = s
        .http
        .get(format!("{}/dashboard", s.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(r#"<tr data-id="org:team""#), "{page}");
    assert!(
        page.contains(r#"<td class="num available">180</td>"#),
        "{page}"
    );
    assert!(
        page.contains(r#"<td class="num limit">$5.00</td>"#),
        "{page}"
    );
    assert!(
        page.contains(r#"<td class="num requested">$1.00</td><td class="left">closed</td>"#),
        "{page}"
    );
    let detail = s
        .http
        .get(format!("{}/dashboard/budgets/org:team", s.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(detail.contains(&held), "the open reservation is listed");
    assert!(
        detail.contains(r#"<section id="usage" data-budget="org:team">"#),
        "{detail}"
    );
    assert!(page.contains(r#"<div id="usage-chart""#), "{page}");
    let script = s
        .http
        .get(format!("{}/dashboard/assets/uPlot.iife.min.js", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(script.headers()["content-type"], "text/javascript");
    assert!(script.text().await.unwrap().contains("uPlot"));
}

#[tokio::test]
async fn memory() {
    the_api_answers_from_the_store(
        MemoryStore::shared(),
        Arc::new(tokenbudget_ledger::MemoryUsageStore::new()),
    )
    .await;
}

#[tokio::test]
async fn sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dash.db");
    let store = tokenbudget_sqlite::SqliteStore::open(path.to_str().unwrap())
        .await
        .unwrap();
    let ledger = tokenbudget_sqlite::SqliteUsageStore::open(path.to_str().unwrap())
        .await
        .unwrap();
    the_api_answers_from_the_store(Arc::new(store), Arc::new(ledger)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres() {
    let url = std::env::var("TOKENBUDGET_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let schema = format!("tb_dash_{}_{:x}", std::process::id(), uuid_ish());
    let config = tokenbudget_postgres::Config::new(&url)
        .unwrap()
        .with_schema(&schema)
        .with_clock(tokenbudget_postgres::ClockSource::Caller);
    let store = match tokenbudget_postgres::PostgresStore::open_with(config.clone()).await {
        Ok(store) => store,
        Err(e) if std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!("!!!! SKIPPED: PostgreSQL at {url}: {e}");
            return;
        }
        Err(e) => panic!("PostgreSQL at {url}: {e}"),
    };
    let ledger = tokenbudget_postgres::PostgresUsageStore::open_with(config)
        .await
        .unwrap();
    the_api_answers_from_the_store(Arc::new(store), Arc::new(ledger)).await;
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .await
        .unwrap();
}

fn uuid_ish() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
        .into()
}

#[tokio::test]
async fn a_token_guards_every_path_and_a_public_address_needs_one() {
    let store = MemoryStore::shared();
    // Without a ledger the usage endpoints say so.
    let bare = Server::start(Dashboard::new(store.clone())).await;
    let (code, body) = bare.get("/api/usage").await;
    assert_eq!(
        (code, body["error"].as_str()),
        (404, Some("no_ledger")),
        "{body}"
    );
    let token = "0123456789abcdef-secret";
    let s = Server::start(Dashboard::new(store.clone()).with_token(token).unwrap()).await;
    for path in ["/dashboard", "/api/budgets", "/dashboard/assets/app.js"] {
        let (code, body) = s.get(path).await;
        assert_eq!(
            (code, body["error"].as_str()),
            (401, Some("unauthorized")),
            "{path}"
        );
    }
    let ok = s
        .http
        .get(format!("{}/api/budgets", s.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let wrong = s
        .http
        .get(format!("{}/api/budgets", s.base))
        .bearer_auth("0123456789abcdef-wrong!")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    // ?token= once sets the cookie the page's own requests then carry.
    let first = s
        .http
        .get(format!("{}/dashboard?token={token}", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    let cookie = first.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let again = s
        .http
        .get(format!("{}/api/budgets", s.base))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);

    assert!(matches!(
        Dashboard::new(store.clone()).with_token("short"),
        Err(tokenbudget_dashboard::Error::WeakToken)
    ));
    let public = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let refused = Dashboard::new(store)
        .serve(public, std::future::pending())
        .await;
    assert!(
        matches!(
            refused,
            Err(tokenbudget_dashboard::Error::TokenRequired { .. })
        ),
        "{refused:?}"
    );
}
