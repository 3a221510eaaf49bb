//! Expired holds, extend, charge and caller-chosen reservation ids from the command line.

mod support;

use serde_json::json;
use support::Scratch;

/// Issue 10's reproduction: a crashed caller's expired hold on `wf:a` must not starve `wf:b`,
/// and status must not show it as held.
#[test]
fn an_expired_hold_on_a_sibling_phase_does_not_refuse() {
    let s = Scratch::new();
    let db = s.db("wf.db");
    let run = |args: &[&str]| {
        let mut full = vec!["--db", &db];
        full.extend_from_slice(args);
        s.run(&full)
    };
    run(&["budget", "create", "wf", "--limit", "1000"]).ok();
    run(&[
        "budget", "create", "wf:a", "--parent", "wf", "--limit", "1000",
    ])
    .ok();
    run(&[
        "budget", "create", "wf:b", "--parent", "wf", "--limit", "1000",
    ])
    .ok();
    run(&["reserve", "wf:a", "800", "--timeout", "1s"]).ok();
    // The CLI reads the system clock: wait out the 1 s timeout.
    std::thread::sleep(std::time::Duration::from_millis(1_100));
    let wf = run(&["budget", "status", "wf", "--json"]).json();
    assert_eq!((&wf["reserved"], &wf["held"]), (&json!(0), &json!(0)));
    assert_eq!(wf["available"], 1000);
    let granted = run(&["reserve", "wf:b", "500", "--json"]).json();
    assert_eq!(granted["outcome"], "granted");
    let wf = run(&["budget", "status", "wf", "--json"]).json();
    assert_eq!(
        (&wf["reserved"], &wf["available"]),
        (&json!(500), &json!(500))
    );
    let released: Vec<_> = run(&["budget", "events", "wf:a", "--json"])
        .json_lines()
        .into_iter()
        .filter(|e| e["type"] == "TOKENS_RELEASED" && e["reason"] == "expired")
        .collect();
    assert_eq!(released.len(), 1, "released once, with its event");
}

#[test]
fn extend_moves_the_expiry_of_a_held_reservation_only() {
    let s = Scratch::new();
    let db = s.db("x.db");
    s.run(&["--db", &db, "budget", "create", "wf", "--limit", "100"])
        .ok();
    let r = s
        .run(&[
            "--db",
            &db,
            "reserve",
            "wf",
            "40",
            "--timeout",
            "1m",
            "--json",
        ])
        .json();
    let id = r["reservation_id"].as_str().unwrap().to_owned();
    let e = s
        .run(&["--db", &db, "extend", &id, "--timeout", "10m", "--json"])
        .json();
    assert_eq!(
        (&e["state"], &e["reservation_id"]),
        (&json!("held"), &r["reservation_id"])
    );
    let before: tokenbudget::Timestamp = serde_json::from_value(r["expires_at"].clone()).unwrap();
    let after: tokenbudget::Timestamp = serde_json::from_value(e["expires_at"].clone()).unwrap();
    assert!(
        after.as_micros() - before.as_micros() >= 9 * 60 * 1_000_000,
        "{before} -> {after}"
    );
    let text = s
        .run(&["--db", &db, "extend", &id, "--timeout", "10m"])
        .ok()
        .to_owned();
    assert!(
        text.starts_with(&format!("extended {id}: held until ")),
        "{text}"
    );
    s.run(&["--db", &db, "commit", &id, "30"]).ok();
    s.run(&["--db", &db, "extend", &id, "--timeout", "10m"])
        .fails(1, "committed");
    s.run(&["--db", &db, "extend", &id, "--timeout", "10"])
        .fails(2, "");
}

#[test]
fn charge_records_once_per_key_even_past_the_limit() {
    let s = Scratch::new();
    let db = s.db("c.db");
    s.run(&["--db", &db, "budget", "create", "wf", "--limit", "100"])
        .ok();
    let args = [
        "--db",
        &db,
        "charge",
        "wf",
        "130",
        "--key",
        "import:msg_1",
        "--note",
        "replayed journal",
        "--json",
    ];
    let first = s.run(&args).json();
    assert_eq!(
        (&first["tokens"], &first["overrun"], &first["replayed"]),
        (&json!(130), &json!(30), &json!(false))
    );
    assert_eq!(first["note"], "replayed journal");
    let again = s.run(&args).json();
    assert_eq!(again["replayed"], true);
    let status = s
        .run(&["--db", &db, "budget", "status", "wf", "--json"])
        .json();
    assert_eq!(
        (&status["used"], &status["exhausted"]),
        (&json!(130), &json!(true))
    );
    s.run(&["--db", &db, "charge", "wf", "131", "--key", "import:msg_1"])
        .fails(1, "import:msg_1");
    let text = s
        .run(&["--db", &db, "charge", "wf", "0", "--key", "k2"])
        .ok()
        .to_owned();
    assert_eq!(text.trim(), "charged 0 tokens to wf");
    s.run(&["--db", &db, "charge", "wf", "1"]).fails(2, "--key");
    let events = s
        .run(&["--db", &db, "budget", "events", "wf"])
        .ok()
        .to_owned();
    assert!(events.contains("TOKENS_CHARGED"), "{events}");
}

#[test]
fn reserve_with_a_chosen_id_can_be_retried_and_rolled_back_by_it() {
    let s = Scratch::new();
    let db = s.db("i.db");
    s.run(&["--db", &db, "budget", "create", "wf", "--limit", "100"])
        .ok();
    let id = "0190a0f0-0000-7000-8000-00000000beef";
    let args = ["--db", &db, "reserve", "wf", "40", "--id", id, "--json"];
    let first = s.run(&args).json();
    assert_eq!(
        (&first["reservation_id"], &first["replayed"]),
        (&json!(id), &json!(false))
    );
    assert_eq!(s.run(&args).json()["replayed"], true);
    s.run(&["--db", &db, "rollback", id]).ok();
    let status = s
        .run(&["--db", &db, "budget", "status", "wf", "--json"])
        .json();
    assert_eq!(status["reserved"], 0);
    s.run(&["--db", &db, "reserve", "wf", "1", "--id", "not-a-uuid"])
        .fails(2, "not-a-uuid");
}
