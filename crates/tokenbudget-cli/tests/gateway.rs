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
    // `open` needs a journal whose folder exists.
    let open = s.file("open.toml", "on_store_error = \"open\"\n");
    s.run(&[
        "gateway",
        "--config",
        open.to_str().unwrap(),
        "--journal",
        "/nonexistent-tokenbudget-folder/gw.journal",
    ])
    .fails(1, "journal");
    s.run(&["gateway", "--on-store-error", "sometimes"])
        .fails(2, "sometimes");
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

/// One HTTP/1.1 request on a fresh connection; the whole answer as text.
fn http(addr: &str, path: &str, headers: &[(&str, &str)], body: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

#[test]
fn gateway_json_logs_parse_and_never_carry_the_key_or_the_upstream_credential() {
    use std::io::BufRead;
    const UPSTREAM_KEY: &str = "sk-ant-cli-test-upstream-secret";
    let s = Scratch::new();
    s.run(&["budget", "create", "team", "--limit", "100000"])
        .ok();
    let key = s
        .run(&["key", "create", "--budget", "team"])
        .ok()
        .trim()
        .to_owned();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let fake = std::sync::Arc::new(tokenbudget_gateway::fake::Fake::default());
    let upstream = runtime
        .block_on(tokenbudget_gateway::fake::start(fake.clone()))
        .unwrap();
    let mut child = s
        .command(&[
            "gateway",
            "--listen",
            "127.0.0.1:0",
            "--anthropic-url",
            &upstream,
            "--log-format",
            "json",
        ])
        .env("ANTHROPIC_API_KEY", UPSTREAM_KEY)
        .env("RUST_LOG", "debug")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let addr = loop {
        let line = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("the gateway says where it listens");
        let v: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
        let url = v["fields"]["url"].as_str().map(str::to_owned);
        lines.push(line);
        if let Some(url) = url {
            break url.trim_start_matches("http://").to_owned();
        }
    };
    let body = r#"{"model":"claude-sonnet-4-5","max_tokens":100,"messages":[{"role":"user","content":"hi"}]}"#;
    for headers in [
        vec![("x-api-key", key.as_str())],
        vec![("authorization", &*format!("Bearer {key}"))],
    ] {
        let answer = http(&addr, "/v1/messages", &headers, body);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    let unknown = format!("tbk_{}", "cd".repeat(32));
    let answer = http(&addr, "/v1/messages", &[("x-api-key", &unknown)], body);
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    // SIGTERM: a graceful stop that flushes the settlements' logs.
    let stopped = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    reader.join().unwrap();
    lines.extend(rx.try_iter());
    assert!(lines.len() > 3, "{lines:#?}");
    let all = lines.join("\n");
    for secret in [key.as_str(), &key[4..], UPSTREAM_KEY, &unknown] {
        assert!(!all.contains(secret), "a secret was logged: {all}");
    }
    let mut targets = std::collections::BTreeSet::new();
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        for field in ["timestamp", "level", "target", "fields"] {
            assert!(v.get(field).is_some(), "no {field}: {line}");
        }
        targets.insert(v["target"].as_str().unwrap().to_owned());
    }
    assert!(
        targets.iter().any(|t| t.starts_with("tower_http")),
        "requests are logged at debug: {targets:?}"
    );
    // The upstream got the gateway's credential.
    let (headers, _) = fake.received().pop().unwrap();
    assert_eq!(headers["x-api-key"], UPSTREAM_KEY);
}

/// Starts `tokenbudget gateway` in front of `upstream`; returns the child and its address.
fn start_gateway(s: &Scratch, upstream: &str) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut child = s
        .command(&[
            "gateway",
            "--listen",
            "127.0.0.1:0",
            "--anthropic-url",
            upstream,
        ])
        .env("ANTHROPIC_API_KEY", "sk-ant-cli-test")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let addr = loop {
        let line = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("the gateway says where it listens");
        if let Some(url) = line.strip_prefix("tokenbudget gateway listening on http://") {
            break url.trim().to_owned();
        }
    };
    (child, addr)
}

/// The usage report's total over every row of `usage session --json`.
fn ledger_total(s: &Scratch) -> (u64, u64) {
    let report = s.run(&["--json", "usage", "session"]).json();
    let rows = report["rows"].as_array().unwrap();
    let responses = rows
        .iter()
        .map(|r| r["totals"]["responses"].as_u64().unwrap())
        .sum();
    let tokens = rows
        .iter()
        .map(|r| r["totals"]["total_tokens"].as_u64().unwrap())
        .sum();
    (responses, tokens)
}

#[test]
fn the_gateway_writes_each_response_to_the_ledger_once_and_an_import_of_its_transcript_adds_nothing(
) {
    let s = Scratch::new();
    s.run(&["budget", "create", "team", "--limit", "1000000"])
        .ok();
    let key = s
        .run(&["key", "create", "--budget", "team"])
        .ok()
        .trim()
        .to_owned();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let fake = std::sync::Arc::new(tokenbudget_gateway::fake::Fake::default());
    let upstream = runtime
        .block_on(tokenbudget_gateway::fake::start(fake))
        .unwrap();
    let (mut child, addr) = start_gateway(&s, &upstream);
    let body = r#"{"model":"claude-sonnet-4-5","max_tokens":100,"messages":[{"role":"user","content":"hi"}]}"#;
    let answer = http(&addr, "/v1/messages", &[("x-api-key", &key)], body);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let (head, json) = answer.split_once("\r\n\r\n").unwrap();
    let message: serde_json::Value = serde_json::from_str(json).unwrap();
    let request_id = head
        .lines()
        .find_map(|l| l.strip_prefix("request-id: "))
        .expect("the upstream's request id reaches the client")
        .trim()
        .to_owned();
    let stopped = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    assert!(child.wait().unwrap().success());

    let used = s.run(&["--json", "budget", "status", "team"]).json()["used"]
        .as_u64()
        .unwrap();
    assert!(used > 0);
    assert_eq!(
        ledger_total(&s),
        (1, used),
        "one row, the tokens the budget paid"
    );

    // Claude Code's transcript of the same response: same message id and request id, the
    // usage the upstream reported. Importing it merges with the gateway's row.
    let usage = &message["usage"];
    let line = serde_json::json!({
        "type": "assistant", "sessionId": "sess-1", "requestId": request_id,
        "timestamp": "2026-12-01T10:00:00Z",
        "message": {"id": message["id"], "model": "claude-sonnet-4-5", "usage": usage,
            "content": [{"type": "text", "text": "hi"}]},
    });
    let project = s.path().join("projects/p");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(project.join("sess-1.jsonl"), format!("{line}\n")).unwrap();
    let projects = s.path().join("projects");
    let import = s
        .run(&[
            "--json",
            "import",
            "claude-code",
            projects.to_str().unwrap(),
        ])
        .json();
    assert_eq!(import["inserted"], 0, "{import}");
    assert_eq!(
        ledger_total(&s),
        (1, used),
        "the import counted nothing twice"
    );
    // The merged row takes the project the transcript knows (the gateway knows none).
    let report = s.run(&["--json", "usage", "session"]).json();
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{report}");
    assert_eq!(rows[0]["label"], "p/sess-1", "{report}");
}
