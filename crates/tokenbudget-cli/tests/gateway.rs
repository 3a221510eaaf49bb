//! `tokenbudget key …` and `tokenbudget gateway`'s start-up checks, on the real binary.
#![cfg(feature = "sqlite")]

mod support;

use support::Scratch;

#[test]
fn key_create_prints_the_key_once_alone_and_stores_only_its_hash() {
    let s = Scratch::new();
    s.run(&["budget", "create", "team", "--limit", "1000"]).ok();
    let out = s
        .run(&["key", "create", "--budget", "team", "--name", "ci"])
        .ok()
        .to_owned();
    let key = out.trim_end_matches('\n');
    assert_eq!(out.lines().count(), 1);
    assert!(key.starts_with("tbk_") && key.len() == 68, "{key}");
    let db = std::fs::read(s.path().join("tokenbudget.db")).unwrap();
    let wal = std::fs::read(s.path().join("tokenbudget.db-wal")).unwrap_or_default();
    let secret = &key.as_bytes()[4..];
    for file in [&db, &wal] {
        assert!(
            !file.windows(secret.len()).any(|w| w == secret),
            "the secret is never stored"
        );
    }

    let json = s
        .run(&[
            "--json",
            "key",
            "create",
            "--budget",
            "team",
            "--session-limit",
            "500",
        ])
        .json();
    assert!(json["key"].as_str().unwrap().starts_with("tbk_"));
    assert_eq!(json["session_limit"], 500);

    let list = s.run(&["--json", "key", "list"]).json_lines();
    assert_eq!(list.len(), 2);
    assert!(list
        .iter()
        .all(|k| k.get("key").is_none() && k.get("hash").is_none()));
    let id = list[0]["id"].as_str().unwrap().to_owned();
    assert!(s.run(&["key", "list"]).ok().contains("ci"));

    s.run(&["key", "revoke", &id]).ok();
    let list = s.run(&["--json", "key", "list"]).json_lines();
    assert!(list
        .iter()
        .any(|k| k["id"] == id.as_str() && !k["revoked_at"].is_null()));
    s.run(&["key", "revoke", "nope"])
        .fails(1, "no key with id nope");
    s.run(&["key", "create", "--budget", "missing"])
        .fails(1, "missing");
}

#[test]
fn gateway_config_errors_at_start_name_the_setting() {
    let s = Scratch::new();
    let bad = s.file("gateway.toml", "[timeouts]\nidle = 1000\n");
    let run = s.run(&[
        "gateway",
        "--listen",
        "127.0.0.1:0",
        "--config",
        bad.to_str().unwrap(),
    ]);
    run.fails(1, "timeouts.idle");
    assert!(run.stderr.contains("no unit"), "{run:?}");
    s.run(&[
        "gateway",
        "--listen",
        "127.0.0.1:0",
        "--anthropic-url",
        "nope",
    ])
    .fails(1, "--anthropic-url");
    let open = s.file("open.toml", "on_store_error = \"open\"\n");
    s.run(&["gateway", "--config", open.to_str().unwrap()])
        .fails(1, "on_store_error");
}

#[test]
fn gateway_route_errors_at_start_name_the_setting() {
    let s = Scratch::new();
    let unknown = s.file(
        "routes.toml",
        "[upstreams.local]\nkind = \"openai\"\nurl = \"http://127.0.0.1:1234/v1\"\n\n[[routes]]\nmatch = \"*\"\nupstream = \"lokal\"\n",
    );
    s.run(&[
        "gateway",
        "--listen",
        "127.0.0.1:0",
        "--config",
        unknown.to_str().unwrap(),
    ])
    .fails(1, "routes[0].upstream");
    // An api_key_env naming a variable that is not set would fail every routed request.
    let keyed = s.file(
        "keyed.toml",
        "[upstreams.paid]\nkind = \"openai\"\nurl = \"https://example.test/v1\"\napi_key_env = \"TOKENBUDGET_CLI_TEST_NO_SUCH_KEY\"\n",
    );
    s.run(&[
        "gateway",
        "--listen",
        "127.0.0.1:0",
        "--config",
        keyed.to_str().unwrap(),
    ])
    .fails(1, "upstreams.paid.api_key_env");
}
