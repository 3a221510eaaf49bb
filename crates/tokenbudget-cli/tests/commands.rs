//! Every command end to end on the real binary: text and `--json` output, the database
//! defaults.

// The CLI's default store; every test here uses it.
#![cfg(feature = "sqlite")]

mod support;

use serde_json::{json, Value};
use support::Scratch;

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.chars().filter(|&c| c == '-').count() == 4
        && s.chars().all(|c| c == '-' || c.is_ascii_hexdigit())
}

#[test]
fn the_default_database_is_tokenbudget_db_in_the_working_directory() {
    let s = Scratch::new();
    s.run(&["count", "--provider", "estimate"]).ok();
    assert!(
        !s.path().join("tokenbudget.db").exists(),
        "count needs no database"
    );

    s.run(&["budget", "create", "wf", "--limit", "100"]).ok();
    assert!(
        s.path().join("tokenbudget.db").exists(),
        "created on first use"
    );
    let status = s.run(&["budget", "status", "wf", "--json"]).json();
    assert_eq!(status["limit"], 100);
}

#[test]
fn tokenbudget_database_url_and_db_choose_the_database() {
    let s = Scratch::new();
    let from_env = s.db("from-env.db");
    let out = s
        .command(&["budget", "create", "env-wf", "--limit", "5"])
        .env("TOKENBUDGET_DATABASE_URL", &from_env)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(s.path().join("from-env.db").exists());
    assert!(!s.path().join("tokenbudget.db").exists());

    // --db beats the variable.
    let flag = s.db("flag.db");
    let out = s
        .command(&["--db", &flag, "budget", "list", "--json"])
        .env("TOKENBUDGET_DATABASE_URL", &from_env)
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty(),
        "a new, empty database: {out:?}"
    );

    // An empty variable means unset.
    let out = s
        .command(&["budget", "list"])
        .env("TOKENBUDGET_DATABASE_URL", "")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(s.path().join("tokenbudget.db").exists());
}

#[test]
fn sqlite_urls_follow_sqlx_relative_and_absolute_forms() {
    let s = Scratch::new();
    std::fs::create_dir(s.path().join("data")).unwrap();
    s.run(&[
        "--db",
        "sqlite://data/rel.db",
        "budget",
        "create",
        "a",
        "--limit",
        "1",
    ])
    .ok();
    assert!(
        s.path().join("data/rel.db").exists(),
        "relative to the working directory"
    );

    let abs = s.path().join("abs.db");
    let url = format!("sqlite://{}", abs.display());
    assert!(url.starts_with("sqlite:///"));
    s.run(&["--db", &url, "budget", "create", "b", "--limit", "1"])
        .ok();
    assert!(abs.exists());

    let listed = s
        .run(&["--db", "sqlite://data/rel.db", "budget", "list", "--json"])
        .json_lines();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], "a");
}

#[test]
fn budget_create_status_list_and_events() {
    let s = Scratch::new();
    let db = s.db("b.db");
    let created = s
        .run(&[
            "--db", &db, "budget", "create", "wf", "--limit", "1000", "--json",
        ])
        .json();
    assert_eq!(
        created,
        json!({"id": "wf", "parent": null, "unit": "tokens", "limit": 1000, "used": 0,
               "reserved": 0, "available": 1000, "exhausted": false, "closed": false,
               "held": 0})
    );
    let text = s.run(&[
        "--db", &db, "budget", "create", "wf:plan", "--limit", "400", "--parent", "wf",
    ]);
    assert_eq!(
        text.ok().trim(),
        "created budget wf:plan under wf with limit 400"
    );

    let id = s
        .run(&["--db", &db, "reserve", "wf:plan", "300"])
        .ok()
        .trim()
        .to_owned();
    s.run(&["--db", &db, "commit", &id, "250"]).ok();

    let status = s
        .run(&["--db", &db, "budget", "status", "wf:plan", "--json"])
        .json();
    for (field, want) in [
        ("id", json!("wf:plan")),
        ("parent", json!("wf")),
        ("limit", json!(400)),
        ("used", json!(250)),
        ("reserved", json!(0)),
        ("available", json!(150)),
        ("exhausted", json!(false)),
    ] {
        assert_eq!(status[field], want, "{field}");
    }
    let text = s.run(&["--db", &db, "budget", "status", "wf"]);
    let text = text.ok();
    assert!(text.contains("available  750"), "{text}");
    assert!(text.contains("used       250"), "{text}");

    let list = s
        .run(&["--db", &db, "budget", "list", "--json"])
        .json_lines();
    let ids: Vec<&str> = list.iter().map(|v| v["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["wf", "wf:plan"]);
    assert_eq!(list[0]["used"], 250);
    let table = s.run(&["--db", &db, "budget", "list"]);
    let lines: Vec<&str> = table.ok().lines().collect();
    assert_eq!(lines.len(), 3, "header and two budgets: {lines:?}");
    assert!(lines[0].starts_with("ID") && lines[0].contains("AVAILABLE"));
    assert!(lines[2].starts_with("wf:plan") && lines[2].contains("150"));

    let events = s
        .run(&["--db", &db, "budget", "events", "wf:plan", "--json"])
        .json_lines();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        ["BUDGET_CREATED", "TOKENS_RESERVED", "TOKENS_COMMITTED"]
    );
    for e in &events {
        assert_eq!(e["budget_id"], "wf:plan");
        assert!(e["seq"].as_u64().unwrap() > 0);
        assert!(
            e["at"].as_str().unwrap().ends_with('Z'),
            "RFC 3339 UTC: {e}"
        );
        assert!(e["tokens"].is_u64(), "{e}");
    }
    assert!(
        events[0].get("reservation_id").is_none(),
        "none applies to BUDGET_CREATED"
    );
    assert_eq!(
        events[0]["tokens"], 400,
        "a new budget's tokens are its limit"
    );
    assert_eq!(
        (&events[1]["reservation_id"], &events[1]["tokens"]),
        (&json!(id), &json!(300))
    );
    assert_eq!(
        (&events[2]["reservation_id"], &events[2]["tokens"]),
        (&json!(id), &json!(250))
    );

    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let after = seqs[0].to_string();
    let later = s
        .run(&[
            "--db", &db, "budget", "events", "wf:plan", "--after", &after, "--json",
        ])
        .json_lines();
    assert_eq!(later.len(), 2, "--after skips the first");
    let text = s.run(&["--db", &db, "budget", "events", "wf:plan"]);
    assert_eq!(text.ok().lines().count(), 3);
    assert!(text.stdout.contains("TOKENS_COMMITTED"));
}

#[test]
fn reserve_commit_and_rollback() {
    let s = Scratch::new();
    let db = s.db("r.db");
    s.run(&["--db", &db, "budget", "create", "wf", "--limit", "1000"])
        .ok();

    // Text: the reservation id alone, for `id=$(tokenbudget reserve …)`.
    let id = s
        .run(&["--db", &db, "reserve", "wf", "100"])
        .ok()
        .trim()
        .to_owned();
    assert!(is_uuid(&id), "{id}");

    let granted = s
        .run(&[
            "--db",
            &db,
            "reserve",
            "wf",
            "200",
            "--timeout",
            "90s",
            "--json",
        ])
        .json();
    let rid = granted["reservation_id"].as_str().unwrap().to_owned();
    assert!(is_uuid(&rid));
    assert_eq!(
        (&granted["budget_id"], &granted["tokens"]),
        (&json!("wf"), &json!(200))
    );
    let expires: &str = granted["expires_at"].as_str().unwrap();
    assert!(expires.ends_with('Z'), "{expires}");
    assert_eq!(granted["outcome"], "granted");

    let committed = s.run(&["--db", &db, "commit", &id, "120", "--json"]).json();
    assert_eq!(committed["reservation_id"], json!(id));
    assert_eq!(committed["state"], "committed");
    assert_eq!(
        (
            &committed["tokens"],
            &committed["actual"],
            &committed["overrun"]
        ),
        (&json!(100), &json!(120), &json!(20)),
        "an overrun is recorded in full"
    );
    let again = s.run(&["--db", &db, "commit", &id, "120", "--json"]).json();
    assert_eq!(again["replayed"], true, "an identical commit is a replay");

    let rolled = s.run(&["--db", &db, "rollback", &rid, "--json"]).json();
    assert_eq!(
        (
            &rolled["reservation_id"],
            &rolled["state"],
            &rolled["released"]
        ),
        (&json!(rid), &json!("released"), &json!(200))
    );
    let text = s.run(&["--db", &db, "rollback", &rid]);
    assert!(text.ok().contains("nothing held"), "{text:?}");

    let status = s
        .run(&["--db", &db, "budget", "status", "wf", "--json"])
        .json();
    assert_eq!(
        (&status["used"], &status["reserved"]),
        (&json!(120), &json!(0))
    );

    let id = s
        .run(&["--db", &db, "reserve", "wf", "10"])
        .ok()
        .trim()
        .to_owned();
    let text = s.run(&["--db", &db, "commit", &id, "15"]);
    assert_eq!(
        text.ok().trim(),
        format!("committed {id}: 15 tokens used of 10 reserved (5 over)")
    );
}

#[test]
fn a_refusal_exits_3_with_the_budget_that_lacked_room() {
    let s = Scratch::new();
    let db = s.db("x.db");
    s.run(&["--db", &db, "budget", "create", "wf", "--limit", "100"])
        .ok();
    s.run(&[
        "--db", &db, "budget", "create", "wf:a", "--limit", "80", "--parent", "wf",
    ])
    .ok();
    s.run(&["--db", &db, "reserve", "wf", "50"]).ok();

    let refused = s.run(&["--db", &db, "reserve", "wf:a", "60"]);
    let line = refused.fails(3, "refused");
    assert!(
        line.contains("budget wf has 50 tokens available; 60 tokens were requested"),
        "{line}"
    );
    assert!(refused.stdout.is_empty());

    let refused = s.run(&["--db", &db, "reserve", "wf:a", "60", "--json"]);
    refused.fails(3, "refused");
    let v: Value = serde_json::from_str(refused.stdout.trim()).unwrap();
    assert_eq!(
        v,
        json!({"outcome": "refused", "reason": "no_room", "budget_id": "wf", "unit": "tokens",
               "requested": 60, "available": 50})
    );
    let status = s
        .run(&["--db", &db, "budget", "status", "wf:a", "--json"])
        .json();
    assert_eq!(status["reserved"], 0, "a refusal holds nothing");
}

#[test]
fn an_idempotency_key_makes_a_retry_return_the_first_reservation() {
    let s = Scratch::new();
    let db = s.db("i.db");
    s.run(&["--db", &db, "budget", "create", "wf", "--limit", "100"])
        .ok();
    let args = [
        "--db",
        &db,
        "reserve",
        "wf",
        "40",
        "--idempotency-key",
        "req-7 try",
        "--json",
    ];
    let first = s.run(&args).json();
    let retry = s.run(&args).json();
    assert_eq!(first["reservation_id"], retry["reservation_id"]);
    assert_eq!(
        (&first["replayed"], &retry["replayed"]),
        (&json!(false), &json!(true))
    );
    let status = s
        .run(&["--db", &db, "budget", "status", "wf", "--json"])
        .json();
    assert_eq!(status["reserved"], 40, "held once");
}

#[test]
fn sweep_releases_expired_reservations() {
    let s = Scratch::new();
    let db = s.db("s.db");
    s.run(&["--db", &db, "budget", "create", "short", "--limit", "100"])
        .ok();
    s.run(&["--db", &db, "budget", "create", "long", "--limit", "100"])
        .ok();
    // On separate budgets: a later reserve on the same budget would release the expired
    // hold itself, before any sweep.
    s.run(&["--db", &db, "reserve", "short", "30", "--timeout", "1ms"])
        .ok();
    s.run(&["--db", &db, "reserve", "long", "20", "--timeout", "1h"])
        .ok();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let swept = s.run(&["--db", &db, "sweep", "--json"]).json();
    assert_eq!(swept, json!({"released": 1}));
    assert_eq!(
        s.run(&["--db", &db, "sweep"]).ok().trim(),
        "released 0 expired reservations"
    );
    let short = s
        .run(&["--db", &db, "budget", "status", "short", "--json"])
        .json();
    let long = s
        .run(&["--db", &db, "budget", "status", "long", "--json"])
        .json();
    assert_eq!(
        (&short["reserved"], &long["reserved"]),
        (&json!(0), &json!(20))
    );
    let events = s
        .run(&["--db", &db, "budget", "events", "short", "--json"])
        .json_lines();
    let released: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "TOKENS_RELEASED")
        .collect();
    assert_eq!(released.len(), 1);
    assert_eq!(
        (&released[0]["tokens"], &released[0]["reason"]),
        (&json!(30), &json!("expired"))
    );
}

#[test]
fn memory_urls_work_for_one_invocation() {
    let s = Scratch::new();
    let created = s
        .run(&[
            "--db",
            "memory://",
            "budget",
            "create",
            "wf",
            "--limit",
            "9",
            "--json",
        ])
        .json();
    assert_eq!(created["available"], 9);
    let listed = s.run(&["--db", "memory://", "budget", "list", "--json"]);
    assert!(listed.ok().is_empty(), "each process gets a new store");
}

#[test]
fn help_and_version_succeed_on_stdout() {
    let s = Scratch::new();
    let help = s.run(&["--help"]);
    let text = help.ok();
    for command in [
        "count", "budget", "reserve", "commit", "rollback", "sweep", "--db", "--json",
    ] {
        assert!(text.contains(command), "{command} in help");
    }
    assert!(text.contains("TOKENBUDGET_DATABASE_URL"));
    let version = s.run(&["--version"]);
    assert!(version.ok().starts_with("tokenbudget "));
    let sub = s.run(&["budget", "create", "--help"]);
    assert!(sub.ok().contains("--parent"));
}

/// The README's "$20 a day per workflow": a daily usd budget in Berlin time, a phase, a hold
/// priced from the model's token estimates, a commit priced from the actual usage.
#[test]
fn twenty_dollars_a_day_per_workflow() {
    let s = Scratch::new();
    let db = s.db("usd.db");
    let created = s.run(&[
        "--db",
        &db,
        "budget",
        "create",
        "wf",
        "--limit",
        "20",
        "--unit",
        "usd",
        "--period",
        "daily",
        "--tz",
        "Europe/Berlin",
    ]);
    assert_eq!(
        created.ok().trim(),
        "created budget wf with limit $20.00, starting again daily (Europe/Berlin)"
    );
    // The phase takes its parent's unit; a token phase under it is a typed error.
    s.run(&[
        "--db", &db, "budget", "create", "wf:draft", "--limit", "5", "--parent", "wf",
    ])
    .ok();
    s.run(&[
        "--db", &db, "budget", "create", "wf:t", "--limit", "5", "--parent", "wf", "--unit",
        "tokens",
    ])
    .fails(1, "would count in tokens under wf, which counts in usd");

    // 20,000 in x $3/MTok + 4,000 out x $15/MTok = $0.12 held.
    let id = s
        .run(&[
            "--db",
            &db,
            "reserve",
            "wf:draft",
            "--model",
            "claude-sonnet-4-5",
            "--input",
            "20000",
            "--output",
            "4000",
        ])
        .ok()
        .trim()
        .to_owned();
    assert!(is_uuid(&id), "{id}");
    let held = s
        .run(&["--db", &db, "budget", "status", "wf", "--json"])
        .json();
    assert_eq!(
        (held["unit"].clone(), held["reserved"].clone()),
        (json!("usd"), json!(120_000))
    );

    // 18,000 x $3 + 2,500 x $15 + 1,000 cache reads x $0.30 (per MTok) = $0.0918.
    let committed = s.run(&[
        "--db",
        &db,
        "commit",
        &id,
        "--input",
        "18000",
        "--output",
        "2500",
        "--cache-read",
        "1000",
    ]);
    assert_eq!(
        committed.ok().trim(),
        format!("committed {id}: $0.0918 used of $0.12 reserved")
    );
    let status = s
        .run(&["--db", &db, "budget", "status", "wf", "--json"])
        .json();
    assert_eq!(status["used"], 91_800);
    assert_eq!(status["available"], 20_000_000 - 91_800);
    assert_eq!(status["period"], "daily tz=Europe/Berlin");
    // A Berlin day: it starts at 23:00 or 22:00 UTC (summer time) and lasts a day.
    let start = status["window"]["start"].as_str().unwrap();
    assert!(
        start.ends_with("T23:00:00.000000Z") || start.ends_with("T22:00:00.000000Z"),
        "{status}"
    );
    let text = s.run(&["--db", &db, "budget", "status", "wf"]);
    let text = text.ok();
    assert!(text.contains("used       $0.0918"), "{text}");
    assert!(text.contains("period     daily (Europe/Berlin)"), "{text}");

    let events = s.run(&["--db", &db, "budget", "events", "wf:draft"]);
    assert!(events.ok().contains("$0.0918 used by"), "{}", events.ok());
    // A usd budget needs the model to price a usage (a usage error, 2, like a bad amount);
    // a model the price table lacks is an error about the data, 1, as for `cost`.
    s.run(&["--db", &db, "reserve", "wf:draft", "--input", "10"])
        .fails(2, "--model");
    s.run(&["--db", &db, "reserve", "wf:draft", "0.0000001"])
        .fails(2, "at most 6 decimals");
    s.run(&[
        "--db",
        &db,
        "reserve",
        "wf:draft",
        "--model",
        "gpt-nope-9",
        "--input",
        "10",
    ])
    .fails(1, "unknown model \"gpt-nope-9\"");
}

#[test]
fn update_close_reopen_and_the_reservations_list() {
    let s = Scratch::new();
    let db = s.db("admin.db");
    s.run(&["--db", &db, "budget", "create", "wf", "--limit", "100"])
        .ok();
    s.run(&[
        "--db", &db, "budget", "create", "wf:a", "--limit", "50", "--parent", "wf",
    ])
    .ok();
    let held = s
        .run(&["--db", &db, "reserve", "wf:a", "30"])
        .ok()
        .trim()
        .to_owned();
    let done = s
        .run(&["--db", &db, "reserve", "wf", "10"])
        .ok()
        .trim()
        .to_owned();
    s.run(&["--db", &db, "commit", &done, "10"]).ok();

    // Lowering below what is used and held is allowed and refuses new holds.
    let updated = s.run(&["--db", &db, "budget", "update", "wf", "--limit", "20"]);
    assert_eq!(updated.ok().trim(), "budget wf: limit 20 (was 100)");
    s.run(&["--db", &db, "reserve", "wf:a", "1"])
        .fails(3, "budget wf has 0 tokens available");
    let raised = s
        .run(&[
            "--db", &db, "budget", "update", "wf", "--limit", "200", "--json",
        ])
        .json();
    assert_eq!(
        (raised["limit"].clone(), raised["available"].clone()),
        (json!(200), json!(160))
    );

    // Closing refuses new holds below it; the held one still commits.
    s.run(&["--db", &db, "budget", "close", "wf"]).ok();
    let refused = s.run(&["--db", &db, "reserve", "wf:a", "1", "--json"]);
    refused.fails(3, "closed");
    let v: Value = serde_json::from_str(refused.stdout.trim()).unwrap();
    assert_eq!(
        (v["reason"].clone(), v["budget_id"].clone()),
        (json!("closed"), json!("wf"))
    );
    let listed = s
        .run(&[
            "--db",
            &db,
            "reservations",
            "list",
            "--state",
            "held",
            "--json",
        ])
        .json_lines();
    let ids: Vec<&str> = listed
        .iter()
        .map(|r| r["reservation_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [held.as_str()]);
    s.run(&["--db", &db, "commit", &held, "25"]).ok();
    s.run(&["--db", &db, "budget", "reopen", "wf"]).ok();
    s.run(&["--db", &db, "reserve", "wf:a", "1"]).ok();

    let all = s
        .run(&[
            "--db",
            &db,
            "reservations",
            "list",
            "--budget",
            "wf",
            "--json",
        ])
        .json_lines();
    assert_eq!(all.len(), 3, "the subtree's reservations: {all:?}");
    let under_a = s
        .run(&[
            "--db",
            &db,
            "reservations",
            "list",
            "--budget",
            "wf:a",
            "--json",
        ])
        .json_lines();
    assert_eq!(under_a.len(), 2, "{under_a:?}");
    let table = s.run(&["--db", &db, "reservations", "list"]);
    assert_eq!(
        table.ok().lines().count(),
        4,
        "header and three: {}",
        table.ok()
    );
    let events = s
        .run(&["--db", &db, "budget", "events", "wf", "--json"])
        .json_lines();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    for t in ["BUDGET_UPDATED", "BUDGET_CLOSED", "BUDGET_REOPENED"] {
        assert!(types.contains(&t), "{t} in {types:?}");
    }
    s.run(&["--db", &db, "budget", "update", "nope", "--limit", "5"])
        .fails(1, "budget nope not found");
    s.run(&["--db", &db, "reservations", "list", "--state", "bogus"])
        .fails(2, "bogus");
}

/// A one-second period rolls over lazily: status shows the new window before any write, and
/// the next write records one BUDGET_RESET with the closed window's usage.
#[test]
fn a_periodic_budget_starts_again_in_each_window() {
    let s = Scratch::new();
    let db = s.db("period.db");
    s.run(&[
        "--db", &db, "budget", "create", "key", "--limit", "100", "--period", "1s",
    ])
    .ok();
    s.run(&["--db", &db, "charge", "key", "100", "--key", "k1"])
        .ok();
    s.run(&["--db", &db, "reserve", "key", "1"])
        .fails(3, "0 tokens available");
    std::thread::sleep(std::time::Duration::from_millis(1_100));
    let status = s
        .run(&["--db", &db, "budget", "status", "key", "--json"])
        .json();
    assert_eq!(
        (status["used"].clone(), status["available"].clone()),
        (json!(0), json!(100))
    );
    s.run(&["--db", &db, "reserve", "key", "60"]).ok();
    let events = s
        .run(&["--db", &db, "budget", "events", "key", "--json"])
        .json_lines();
    let resets: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "BUDGET_RESET")
        .collect();
    assert_eq!(resets.len(), 1, "{events:?}");
    assert_eq!(resets[0]["used"], 100);
}
