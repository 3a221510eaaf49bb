//! The dashboard in a real browser: Debian's headless Chromium driven through chromedriver
//! (WebDriver) by fantoccini. Writes `target/dashboard.png` for people to look at.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (`cargo xtask e2e` and `.ci/run`
//! install them); without them the test is skipped, and under `CI=true` it fails.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use tokenbudget_core::{Clock, ManualClock, ReserveOptions, Timestamp, Tracker};
use tokenbudget_dashboard::Dashboard;
use tokenbudget_ledger::{Usage, UsageRecord};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

fn browser_available() -> bool {
    let there = Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists();
    if !there {
        let message = format!(
            "{CHROMIUM} and {CHROMEDRIVER} are needed (apt-get install chromium chromium-driver)"
        );
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{message}");
        eprintln!("!!!! SKIPPED: {message}");
    }
    there
}

/// chromedriver on a free port, killed on drop.
struct Driver {
    child: tokio::process::Child,
    url: String,
}

impl Driver {
    async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = tokio::process::Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        for _ in 0..200 {
            let ready = http.get(format!("{url}/status")).send().await;
            if let Ok(r) = ready {
                if let Ok(v) = r.json::<Value>().await {
                    if v["value"]["ready"] == true {
                        return Self { child, url };
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("chromedriver did not become ready at {url}");
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// chromedriver's browser log (`goog:loggingPrefs`), which WebDriver itself has no command for.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(json!({"type": "browser"}).to_string()),
        )
    }
}

async fn browser(driver: &Driver) -> Client {
    let caps = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=1280,1500"],
        },
        "goog:loggingPrefs": {"browser": "ALL"},
    });
    let Value::Object(caps) = caps else {
        unreachable!()
    };
    ClientBuilder::rustls()
        .unwrap()
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a chromium session")
}

async fn text(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .unwrap()
}

/// Waits (up to 20 s) for `css`'s text to become `want`.
async fn wait_for_text(c: &Client, css: &str, want: &str) {
    let mut last = String::new();
    for _ in 0..200 {
        if let Ok(e) = c.find(Locator::Css(css)).await {
            last = e.text().await.unwrap_or_default();
            if last == want {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{css} still reads {last:?}, not {want:?}");
}

/// Waits (up to 20 s) for `script` to return `want`.
async fn wait_for_js(c: &Client, script: &str, want: Value) {
    let mut last = Value::Null;
    for _ in 0..200 {
        if let Ok(v) = c.execute(script, vec![]).await {
            if v == want {
                return;
            }
            last = v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{script} still returns {last}, not {want}");
}

/// 2026-12-02T08:00:00Z, the test's now.
const NOW: i64 = 1_796_198_400;
const DAY: i64 = 86_400;

/// Ledger records on four days (Nov 28, Nov 30, Dec 1 and Dec 2), two models; the last two
/// charged to org:write.
fn records() -> Vec<UsageRecord> {
    let rec = |key: &str,
               model: &str,
               session: &str,
               ts: i64,
               input: u64,
               output: u64,
               budget: Option<&str>| UsageRecord {
        key: key.into(),
        source: "claude-code".into(),
        machine: "m".into(),
        session_id: session.into(),
        project: "demo".into(),
        model: model.into(),
        timestamp: ts * 1_000_000,
        usage: Usage {
            input,
            output,
            cache_write_5m: input / 10,
            cache_read: input * 4,
            ..Usage::default()
        },
        raw_usage: "{}".into(),
        file: "/t/a.jsonl".into(),
        offset: 0,
        estimated: false,
        budget: budget.map(Into::into),
    };
    let (sonnet, haiku) = ("claude-sonnet-4-20250514", "claude-3-5-haiku-20241022");
    vec![
        rec("a", sonnet, "s1", NOW - 4 * DAY, 20_000, 4_000, None),
        rec("b", haiku, "s1", NOW - 2 * DAY, 50_000, 9_000, None),
        rec("c", sonnet, "s2", NOW - DAY, 30_000, 6_000, None),
        rec(
            "d",
            haiku,
            "s2",
            NOW - DAY + 600,
            8_000,
            1_000,
            Some("org:write"),
        ),
        rec(
            "e",
            sonnet,
            "s3",
            NOW - 3_600,
            12_000,
            3_000,
            Some("org:write"),
        ),
    ]
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_the_budgets_and_a_new_hold_without_a_reload() {
    if !browser_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("b.db");
    let store: tokenbudget_core::DynBudgetStore = Arc::new(
        tokenbudget_sqlite::SqliteStore::open(db.to_str().unwrap())
            .await
            .unwrap(),
    );
    let ledger: tokenbudget_ledger::DynUsageStore = Arc::new(
        tokenbudget_sqlite::SqliteUsageStore::open(db.to_str().unwrap())
            .await
            .unwrap(),
    );
    let records = records();
    ledger.write(&records, None).await.unwrap();
    let clock = Arc::new(ManualClock::new(Timestamp::from_micros(NOW * 1_000_000)));
    let t = Tracker::builder(store.clone()).clock(clock.clone()).build();
    t.create_workflow("org", 10_000).await.unwrap();
    t.create_phase("org:search", "org", 4_000).await.unwrap();
    t.create_phase("org:write", "org", 2_000).await.unwrap();
    let r = t
        .reserve("org:search", 1_500, ReserveOptions::new())
        .await
        .unwrap()
        .into_result()
        .unwrap();
    t.commit(r.reservation.id, 1_234).await.unwrap();
    t.reserve("org:write", 1_900, ReserveOptions::new())
        .await
        .unwrap()
        .into_result()
        .unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let dashboard = Dashboard::new(store)
        .with_clock(clock.clone() as Arc<dyn Clock>)
        .with_usage(ledger);
    tokio::spawn(dashboard.serve(listener, std::future::pending()));

    let driver = Driver::start().await;
    let c = browser(&driver).await;
    c.goto(&format!("{base}/dashboard")).await.unwrap();
    let rows = c.find_all(Locator::Css("#budgets tbody tr")).await.unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(text(&c, r#"tr[data-id="org"] td.used"#).await, "1,234");
    assert_eq!(text(&c, r#"tr[data-id="org"] td.reserved"#).await, "1,900");
    assert_eq!(text(&c, r#"tr[data-id="org"] td.available"#).await, "6,866");
    assert_eq!(
        text(&c, r#"tr[data-id="org:write"] td.available"#).await,
        "100"
    );
    assert_eq!(
        text(&c, r#"tr[data-id="org:write"] td.state"#).await,
        "open"
    );
    let used_bar = c
        .find(Locator::Css(r#"tr[data-id="org:search"] .bar .used"#))
        .await
        .unwrap()
        .attr("style")
        .await
        .unwrap()
        .unwrap_or_default();
    assert!(used_bar.contains("30.8%"), "1234 of 4000: {used_bar}");

    // The usage chart: one point per day of the default 30-day range, four of them with
    // usage; the totals card sums every record.
    wait_for_js(
        &c,
        r#"return document.getElementById("usage-chart").getAttribute("data-points");"#,
        json!("30"),
    )
    .await;
    let chart = c
        .execute(
            r#"const u = window.__charts["usage-chart"];
               return [u.data.length, u.data[0].length, u.data[1].filter(v => v > 0).length];"#,
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        chart,
        json!([6, 30, 4]),
        "x, 4 stacked kinds, cost; 30 days; 4 with usage"
    );
    let total: u64 = records.iter().map(|r| r.usage.total_tokens()).sum();
    assert_eq!(
        text(&c, "#usage-total .value.tokens").await,
        tokenbudget_dashboard::view::amount(tokenbudget_core::Unit::Tokens, total)
    );
    let models = c
        .find_all(Locator::Css("#usage-models tbody tr"))
        .await
        .unwrap();
    assert_eq!(models.len(), 2);
    wait_for_js(
        &c,
        r#"return document.querySelectorAll('#usage-sessions tbody tr').length;"#,
        json!(3),
    )
    .await;
    wait_for_js(
        &c,
        r#"return document.querySelectorAll('#usage-blocks tbody tr').length;"#,
        json!(4),
    )
    .await;

    // A refusal and a hold made now appear without a reload: the marker set on this page
    // survives.
    c.execute("window.__sameDocument = true;", vec![])
        .await
        .unwrap();
    let refused = t
        .reserve("org:write", 5_000, ReserveOptions::new())
        .await
        .unwrap();
    assert_eq!(refused.refused().map(|r| r.available), Some(100));
    wait_for_text(&c, "#refusals tbody tr:first-child td.budget", "org:write").await;
    assert_eq!(
        text(&c, "#refusals tbody tr:first-child td.kind").await,
        "refused"
    );
    assert_eq!(
        text(&c, "#refusals tbody tr:first-child td.requested").await,
        "5,000 tokens"
    );
    assert_eq!(
        text(&c, "#refusals tbody tr:first-child td.left").await,
        "100 tokens available"
    );
    t.reserve("org:write", 100, ReserveOptions::new())
        .await
        .unwrap()
        .into_result()
        .unwrap();
    wait_for_text(&c, r#"tr[data-id="org:write"] td.available"#, "0").await;
    let held_bar = c
        .find(Locator::Css(r#"tr[data-id="org:write"] .bar .held"#))
        .await
        .unwrap()
        .attr("style")
        .await
        .unwrap()
        .unwrap_or_default();
    assert!(held_bar.contains("100.0%"), "all of it held: {held_bar}");
    assert_eq!(text(&c, r#"tr[data-id="org"] td.reserved"#).await, "2,000");
    let same = c
        .execute("return window.__sameDocument === true;", vec![])
        .await
        .unwrap();
    assert_eq!(same, json!(true), "the page was reloaded");

    let png = c.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    let shot = target_dir().join("dashboard.png");
    std::fs::create_dir_all(shot.parent().unwrap()).unwrap();
    std::fs::write(&shot, png).unwrap();
    eprintln!("screenshot: {}", shot.display());

    // The detail page: its open reservations, and the browser logged no error anywhere.
    c.goto(&format!("{base}/dashboard/budgets/org:write"))
        .await
        .unwrap();
    let held = c.find_all(Locator::Css("#held tbody tr")).await.unwrap();
    assert_eq!(held.len(), 2);
    // Its usage over time: the records charged to it, on two days.
    wait_for_js(
        &c,
        r#"const u = window.__charts && window.__charts["usage-chart"];
           return u ? u.data[1].filter(v => v > 0).length : -1;"#,
        json!(2),
    )
    .await;
    let log = c.issue_cmd(BrowserLog).await.unwrap();
    let errors: Vec<&Value> = log
        .as_array()
        .map(|entries| entries.iter().filter(|e| e["level"] == "SEVERE").collect())
        .unwrap_or_default();
    assert!(log.is_array(), "chromedriver returned its log: {log}");
    assert!(errors.is_empty(), "console errors: {errors:?}");
    c.close().await.unwrap();
}
