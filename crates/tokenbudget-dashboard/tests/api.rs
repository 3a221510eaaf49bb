//! The JSON API over a real server, on memory, SQLite and Postgres.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokenbudget_core::testkit::tracker;
use tokenbudget_core::{
    Clock, DynBudgetStore, ManualClock, MemoryStore, NewBudget, Period, ReserveOptions, Unit,
};
use tokenbudget_dashboard::Dashboard;

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

/// Fills `store`: org (1000) > team (600) > alice (200); solo ($5/day, usd); a commit, a held
/// reservation, a closed budget. Returns the server and the held reservation's id.
async fn filled(store: DynBudgetStore) -> (Server, String) {
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
    let server = Server::start(Dashboard::new(store).with_clock(clock)).await;
    (server, held.reservation.id.to_string())
}

async fn the_api_answers_from_the_store(store: DynBudgetStore) {
    let (s, held) = filled(store).await;

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
    the_api_answers_from_the_store(MemoryStore::shared()).await;
}

#[tokio::test]
async fn sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dash.db");
    let store = tokenbudget_sqlite::SqliteStore::open(path.to_str().unwrap())
        .await
        .unwrap();
    the_api_answers_from_the_store(Arc::new(store)).await;
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
    let store = match tokenbudget_postgres::PostgresStore::open_with(config).await {
        Ok(store) => store,
        Err(e) if std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!("!!!! SKIPPED: PostgreSQL at {url}: {e}");
            return;
        }
        Err(e) => panic!("PostgreSQL at {url}: {e}"),
    };
    the_api_answers_from_the_store(Arc::new(store)).await;
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
