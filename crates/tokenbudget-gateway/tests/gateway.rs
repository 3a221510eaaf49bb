//! The gateway in front of the in-process fake upstream: pass-through, settlement on every
//! path, refusals, clamps, keys.

mod common;

use std::time::Duration;

use common::{request, start, UPSTREAM_KEY};
use serde_json::{json, Value};
use tokenbudget_gateway::fake::Mode;
use tokenbudget_gateway::Settled;

#[tokio::test]
async fn non_streaming_passes_bytes_and_commits_reported_usage() {
    let h = start(100_000, |_| {}).await;
    let body = request("Say hello.", 1_000, false);
    let direct = reqwest::Client::new()
        .post(format!(
            "{}/v1/messages",
            h.gateway.settings().anthropic_url
        ))
        .json(&body)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let through = h.messages(&body).send().await.unwrap();
    assert_eq!(through.status(), 200);
    assert!(
        through.headers().get("request-id").is_some(),
        "upstream headers pass through"
    );
    assert_eq!(through.bytes().await.unwrap(), direct, "byte-exact");
    h.settled().await;
    let status = h.status("team").await;
    // Fake: 25 input + 5 words of output.
    assert_eq!((status.used, status.reserved, status.held), (30, 0, 0));
    let records = h.ledger.records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].settled, Settled::Completed);
    assert!(records[0]
        .message_id
        .as_deref()
        .unwrap()
        .starts_with("msg_fake_"));
    assert!(records[0]
        .request_id
        .as_deref()
        .unwrap()
        .starts_with("req_"));
    // The upstream got the gateway's credential, never the client's key.
    let (headers, _) = h.fake.received().pop().unwrap();
    assert_eq!(headers.get("x-api-key").unwrap(), UPSTREAM_KEY);
    assert!(headers
        .iter()
        .all(|(_, v)| !v.as_bytes().windows(4).any(|w| w == b"tbk_")));
    h.shutdown().await;
}

#[tokio::test]
async fn streams_split_at_odd_boundaries_pass_byte_exact_and_settle() {
    let h = start(1_000_000, |_| {}).await;
    for chunk in [1, 2, 3, 5, 7, 64, 4096] {
        h.fake.set_chunk(chunk);
        let body = request(&format!("split {chunk}"), 2_000, true);
        let direct = h
            .client
            .post(format!(
                "{}/v1/messages",
                h.gateway.settings().anthropic_url
            ))
            .json(&body)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let through = h.messages(&body).send().await.unwrap();
        assert_eq!(through.headers()["content-type"], "text/event-stream");
        let got = through.bytes().await.unwrap();
        assert_eq!(got, direct, "chunk {chunk}: byte-exact");
        assert!(!String::from_utf8_lossy(&got).contains("\nid:"));
    }
    h.settled().await;
    let status = h.status("team").await;
    assert_eq!(status.used, 7 * 30);
    assert_eq!(status.held, 0);
    assert!(h
        .ledger
        .records()
        .iter()
        .all(|r| r.settled == Settled::Completed && !r.estimated));
    h.shutdown().await;
}

#[tokio::test]
async fn errors_before_the_first_byte_pass_through_and_roll_back() {
    let h = start(100_000, |_| {}).await;
    for code in [429u16, 500, 529] {
        h.fake.set_mode(Mode::Status(code));
        let response = h.messages(&request("x", 1_000, true)).send().await.unwrap();
        assert_eq!(response.status().as_u16(), code);
        assert_eq!(response.headers()["retry-after"], "1");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["message"], "fake failure");
    }
    h.settled().await;
    let status = h.status("team").await;
    assert_eq!((status.used, status.reserved, status.held), (0, 0, 0));
    assert!(h
        .ledger
        .records()
        .iter()
        .all(|r| r.settled == Settled::RolledBack));
    h.shutdown().await;
}

#[tokio::test]
async fn error_event_mid_stream_commits_input_and_estimated_output() {
    let h = start(100_000, |_| {}).await;
    h.fake.set_mode(Mode::ErrorMidStream);
    let text = h
        .messages(&request("x", 1_000, true))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("event: error"),
        "the client sees the upstream's error event"
    );
    h.settled().await;
    let status = h.status("team").await;
    assert_eq!(status.held, 0);
    // 25 input (from message_start) + the text deltas' bytes / 3, rounded up.
    let deltas = "Hello from the fake upstream.".len() as u64;
    assert_eq!(status.used, 25 + deltas.div_ceil(3));
    let record = h.ledger.records().pop().unwrap();
    assert!(record.estimated);
    assert_eq!(record.settled, Settled::Partial);
    h.shutdown().await;
}

#[tokio::test]
async fn connection_cut_mid_stream_commits_what_was_known_and_the_client_sees_a_cut() {
    let h = start(100_000, |_| {}).await;
    h.fake.set_mode(Mode::Cut);
    let response = h.messages(&request("x", 1_000, true)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.bytes().await.is_err(),
        "a cut upstream is a cut for the client"
    );
    h.settled().await;
    let status = h.status("team").await;
    assert_eq!(status.held, 0);
    assert!(
        status.used >= 25,
        "never a rollback once the upstream accepted"
    );
    h.shutdown().await;
}

#[tokio::test]
async fn client_disconnect_storm_leaves_no_hold_and_no_stream() {
    let h = start(10_000_000, |_| {}).await;
    h.fake.set_mode(Mode::Hang);
    let mut tasks = Vec::new();
    for i in 0..40 {
        let req = h.messages(&request(&format!("hang {i}"), 1_000, true));
        tasks.push(tokio::spawn(async move {
            let mut response = req.send().await.unwrap();
            // Read the first chunk (message_start), then go away.
            let first = response.chunk().await.unwrap().unwrap();
            assert!(!first.is_empty());
            drop(response);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    h.settled().await;
    let status = h.status("team").await;
    assert_eq!((status.reserved, status.held), (0, 0));
    // Each abandoned stream is charged its reported input (25) plus an estimate of the text
    // relayed before the client left (at most 29 bytes: 10 tokens).
    assert!((40 * 25..=40 * 35).contains(&status.used), "{status:?}");
    assert_eq!(h.gateway.open_streams(), 0);
    assert!(h
        .ledger
        .records()
        .iter()
        .all(|r| r.settled == Settled::Partial));
    h.shutdown().await;
}

#[tokio::test]
async fn slow_first_byte_times_out_and_rolls_back() {
    let h = start(100_000, |s| {
        s.timeouts.first_byte = Duration::from_millis(200)
    })
    .await;
    h.fake.set_mode(Mode::Slow(Duration::from_secs(5)));
    let response = h.messages(&request("x", 1_000, true)).send().await.unwrap();
    assert_eq!(response.status(), 504);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "timeout_error");
    h.settled().await;
    let status = h.status("team").await;
    assert_eq!((status.used, status.held), (0, 0));
    h.shutdown().await;
}

#[tokio::test]
async fn refusal_names_the_budget_is_not_retried_and_forwards_nothing() {
    let h = start(100, |s| s.min_output_tokens = 1_000).await;
    let response = h
        .messages(&request("hello", 32_000, true))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(response.headers()["x-should-retry"], "false");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("budget team has 100 tokens left"),
        "{message}"
    );
    assert!(h.fake.received().is_empty());
    h.shutdown().await;
}

#[tokio::test]
async fn max_tokens_is_lowered_to_what_the_budget_can_pay_for() {
    let h = start(5_000, |_| {}).await;
    let body = request("hello", 128_000, true);
    let response = h.messages(&body).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let clamped = common::clamped_max_tokens(&response);
    let _ = response.bytes().await.unwrap();
    let (_, forwarded) = h.fake.received().pop().unwrap();
    assert_eq!(forwarded["max_tokens"].as_u64(), Some(clamped));
    let prompt = tokenbudget_gateway::bound::claude_prompt_bound(&body);
    assert_eq!(clamped, 5_000 - prompt);
    h.settled().await;
    assert_eq!(h.status("team").await.held, 0);
    // The log keeps the first, refused try and the clamped grant with what was asked.
    let recent = h
        .gateway
        .budgets()
        .store()
        .recent_events(tokenbudget::RecentQuery::refusals_and_clamps(10))
        .await
        .unwrap();
    let kinds: Vec<&tokenbudget::EventKind> = recent.iter().map(|e| &e.kind).collect();
    assert!(
        matches!(
            kinds.as_slice(),
            [
                tokenbudget::EventKind::ReserveClamped { asked, tokens, .. },
                tokenbudget::EventKind::ReserveRefused { requested, available: 5_000, .. },
            ] if *asked == prompt + 128_000 && *tokens == 5_000 && requested == asked
        ),
        "{kinds:?}"
    );
    h.shutdown().await;
}

#[tokio::test]
async fn dense_input_never_overdraws() {
    // The fake reports one input token per 2 bytes of the request: far denser than any
    // estimate, still below the byte bound.
    let h = start(20_000, |s| s.min_output_tokens = 10).await;
    h.fake.set_input_tokens(None);
    let dense = "жщфыъэюяшгдз".repeat(100);
    let mut refused = false;
    for _ in 0..40 {
        let response = h
            .messages(&request(&dense, 32_000, true))
            .send()
            .await
            .unwrap();
        if response.status() == 400 {
            refused = true;
            break;
        }
        let _ = response.bytes().await.unwrap();
        h.settled().await;
        let s = h.status("team").await;
        assert!(s.used <= s.limit, "overdrawn: {s:?}");
    }
    assert!(refused, "the budget runs out and then refuses");
    h.settled().await;
    let s = h.status("team").await;
    assert!(s.used <= s.limit && s.held == 0, "{s:?}");
    h.shutdown().await;
}

#[tokio::test]
async fn many_concurrent_streams_never_overdraw_by_event_replay() {
    let h = start(10_000, |s| s.min_output_tokens = 100).await;
    h.fake.set_chunk(3);
    let mut tasks = Vec::new();
    for i in 0..60 {
        let req = h.messages(&request(&format!("concurrent {i}"), 400, true));
        tasks.push(tokio::spawn(async move {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let _ = r.bytes().await;
            status
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            200 => ok += 1,
            400 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(ok > 0);
    h.settled().await;
    let events = h.gateway.budgets().events("team", 0).await.unwrap();
    for end in 1..=events.len() {
        let state = tokenbudget::replay(&events[..end]).unwrap();
        let b = &state[&"team".try_into().unwrap()];
        assert!(
            b.used + b.reserved <= b.limit,
            "overdraft after event {end}: {b:?}"
        );
    }
    let s = h.status("team").await;
    assert_eq!(s.held, 0);
    assert_eq!(s.used, ok * 30);
    h.shutdown().await;
}

#[tokio::test]
async fn keys_budget_narrowing_and_sessions() {
    let h = start(1_000_000, |_| {}).await;
    let budgets = h.gateway.budgets();
    budgets
        .create_phase("team.review", "team", 50_000)
        .await
        .unwrap();
    budgets.create_workflow("other", 50_000).await.unwrap();
    let url = format!("{}/v1/messages", h.url);
    let body = request("x", 100, false);

    let missing = h.client.post(&url).json(&body).send().await.unwrap();
    assert_eq!(missing.status(), 401);
    let v: Value = missing.json().await.unwrap();
    assert_eq!(v["error"]["type"], "authentication_error");
    let unknown = h
        .client
        .post(&url)
        .header("x-api-key", "tbk_nope")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 401);

    let bearer = h
        .client
        .post(&url)
        .bearer_auth(&h.key)
        .header("x-tokenbudget-budget", "team.review")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), 200);
    assert_eq!(bearer.headers()["x-tokenbudget-budget"], "team.review");
    let forbidden = h
        .messages(&body)
        .header("x-tokenbudget-budget", "other")
        .send()
        .await
        .unwrap();
    assert_eq!(forbidden.status(), 403);
    assert_eq!(
        forbidden.json::<Value>().await.unwrap()["error"]["type"],
        "permission_error"
    );

    // Forwarding mode: the client's own credential goes upstream.
    let own = h
        .client
        .post(&url)
        .header("x-tokenbudget-key", &h.key)
        .header("x-api-key", "sk-client-own")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), 200);
    let (headers, _) = h.fake.received().pop().unwrap();
    assert_eq!(headers.get("x-api-key").unwrap(), "sk-client-own");
    assert!(headers.get("x-tokenbudget-key").is_none());

    // Sessions: a key with a session limit gets one phase per Claude Code session.
    let (session_key, record) =
        tokenbudget_gateway::keys::generate("team".try_into().unwrap(), None, Some(1_000)).unwrap();
    tokenbudget_gateway::KeyStore::insert(&*h.keys, &record)
        .await
        .unwrap();
    for session in ["s1", "s2", "s1"] {
        let r = h
            .client
            .post(&url)
            .header("x-api-key", &session_key)
            .header("x-claude-code-session-id", session)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let _ = r.bytes().await;
    }
    let meta = json!({"model": "m", "max_tokens": 100, "metadata": {"user_id": "user_x_account_y_session_s3"}, "messages": [{"role": "user", "content": "x"}]});
    let r = h
        .client
        .post(&url)
        .header("x-api-key", &session_key)
        .json(&meta)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-tokenbudget-budget"], "team:session:s3");
    h.settled().await;
    assert_eq!(h.status("team:session:s1").await.used, 60);
    assert_eq!(h.status("team:session:s2").await.used, 30);
    assert_eq!(h.status("team:session:s1").await.limit, 1_000);

    tokenbudget_gateway::KeyStore::revoke(&*h.keys, &record.id, chrono::Utc::now())
        .await
        .unwrap();
    let revoked = h
        .client
        .post(&url)
        .header("x-api-key", &session_key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 401);
    assert!(revoked.text().await.unwrap().contains("revoked"));
    h.shutdown().await;
}

#[tokio::test]
async fn openai_stream_hides_the_usage_chunk_it_asked_for() {
    let h = start(100_000, |_| {}).await;
    h.fake.set_chunk(5);
    let url = format!("{}/v1/chat/completions", h.url);
    let body = json!({"model": "gpt-4o", "stream": true, "max_tokens": 500, "messages": [{"role": "user", "content": "hi"}]});
    let text = h
        .client
        .post(&url)
        .bearer_auth(&h.key)
        .json(&body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"));
    assert!(
        !text.contains("\"usage\""),
        "the usage chunk the gateway asked for is hidden: {text}"
    );
    let (headers, forwarded) = h.fake.received().pop().unwrap();
    assert_eq!(forwarded["stream_options"]["include_usage"], true);
    assert_eq!(headers["authorization"], "Bearer sk-openai-gateway-own");

    // A client that asked for usage gets the bytes as they are.
    let asked = json!({"model": "gpt-4o", "stream": true, "max_tokens": 500, "stream_options": {"include_usage": true}, "messages": [{"role": "user", "content": "hi"}]});
    let direct = h
        .client
        .post(format!(
            "{}/v1/chat/completions",
            h.gateway.settings().anthropic_url
        ))
        .json(&asked)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let through = h
        .client
        .post(&url)
        .bearer_auth(&h.key)
        .json(&asked)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(through, direct);
    h.settled().await;
    assert_eq!(h.status("team").await.used, 2 * 30);

    // Errors in OpenAI's shape.
    let missing = h.client.post(&url).json(&body).send().await.unwrap();
    assert_eq!(missing.status(), 401);
    let v: Value = missing.json().await.unwrap();
    assert!(v["error"]["message"].is_string() && v.get("type").is_none());
    h.shutdown().await;
}

#[tokio::test]
async fn health_ready_metrics_and_models() {
    let h = start(100_000, |_| {}).await;
    let _ = h
        .messages(&request("x", 100, false))
        .send()
        .await
        .unwrap()
        .bytes()
        .await;
    h.settled().await;
    assert_eq!(
        h.client
            .get(format!("{}/healthz", h.url))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        h.client
            .get(format!("{}/readyz", h.url))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let metrics = h
        .client
        .get(format!("{}/metrics", h.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("tokenbudget_gateway_requests_total"),
        "{metrics}"
    );
    assert!(metrics.contains("tokenbudget_gateway_tokens_total"));
    // On loopback the gateway also serves the dashboard, over the same budgets.
    let page = h
        .client
        .get(format!("{}/dashboard", h.url))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let budgets: Value = h.get_json("/api/budgets").await;
    let used: u64 = budgets["budgets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["depth"] == 0)
        .map(|b| b["used"].as_u64().unwrap())
        .sum();
    assert!(used > 0, "the request's usage shows: {budgets}");
    let models = h
        .client
        .get(format!("{}/v1/models", h.url))
        .header("x-api-key", &h.key)
        .send()
        .await
        .unwrap();
    assert_eq!(models.status(), 200);
    h.shutdown().await;
}

#[tokio::test]
async fn graceful_shutdown_settles_open_streams() {
    let h = start(1_000_000, |_| {}).await;
    h.fake.set_mode(Mode::Hang);
    let mut response = h.messages(&request("x", 1_000, true)).send().await.unwrap();
    let _ = response.chunk().await.unwrap();
    let gateway = h.gateway.clone();
    assert_eq!(gateway.unsettled(), 1);
    // Grace is 5 s in the harness; the hanging stream is then dropped and settled.
    h.shutdown().await;
    assert_eq!(gateway.unsettled(), 0);
    let s = gateway.budgets().status("team").await.unwrap();
    // 25 input + the 29 bytes of text relayed before the hang, estimated at 10 tokens.
    assert_eq!((s.held, s.used), (0, 35));
    drop(response);
}
