//! The Claude counter against an in-process fake of the `count_tokens` API.
#![cfg(feature = "claude")]

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::fake_api::{FakeApi, Reply};
use support::logs;
use tokenbudget_counter::{
    ClaudeConfig, ClaudeCounter, ContentBlock, CounterId, Encoding, Error, Estimator, Exactness,
    FallbackCause, LocalCounter, Message, Role, TokenCounter,
};
use tracing::Level;

const KEY: &str = "sk-ant-test-key";
const MODEL: &str = "claude-sonnet-4-5";

fn counter(api: &FakeApi) -> ClaudeCounter {
    ClaudeConfig::new(MODEL)
        .with_base_url(api.base_url())
        .with_api_key(KEY)
        .with_timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

fn conversation() -> Vec<Message> {
    vec![
        Message::system("Be brief."),
        Message::user("What's the weather in Paris?").with_name("alice"),
        Message::assistant(vec![
            ContentBlock::Text {
                text: "Let me check.".into(),
            },
            ContentBlock::ToolUse {
                id: "toolu_01".into(),
                name: "get_weather".into(),
                input: json!({"city": "Paris"}),
            },
        ]),
        Message::user(vec![ContentBlock::ToolResult {
            tool_use_id: "toolu_01".into(),
            content: Some("18°C, cloudy".into()),
            is_error: None,
        }]),
    ]
}

#[tokio::test]
async fn success_sends_the_documented_request_and_returns_an_exact_count() {
    let api = FakeApi::start(|_| Reply::tokens(42)).await;
    let tools = vec![json!({
        "name": "get_weather",
        "description": "Current weather for a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}
    })];
    let counter = ClaudeConfig::new(MODEL)
        .with_base_url(format!("{}/", api.base_url()))
        .with_api_key(KEY)
        .with_tools(tools.clone())
        .build()
        .unwrap();

    let count = counter.count_messages(&conversation()).await.unwrap();
    assert_eq!(count.tokens, 42);
    assert_eq!(count.counter, CounterId::Claude);
    assert_eq!(count.exactness, Exactness::Exact);

    let requests = api.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/v1/messages/count_tokens");
    assert_eq!(request.header("x-api-key"), Some(KEY));
    assert_eq!(request.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(
        request.json(),
        json!({
            "model": MODEL,
            "system": "Be brief.",
            "messages": [
                {"role": "user", "content": "What's the weather in Paris?"},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "Let me check."},
                    {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_01", "content": "18°C, cloudy"}
                ]}
            ],
            "tools": tools,
        })
    );
}

#[tokio::test]
async fn count_sends_one_user_message_without_optional_fields() {
    let api = FakeApi::start(|_| Reply::tokens(12)).await;
    let count = counter(&api).count("Hello, Claude").await.unwrap();
    assert_eq!(count.tokens, 12);
    assert_eq!(
        api.requests()[0].json(),
        json!({"model": MODEL, "messages": [{"role": "user", "content": "Hello, Claude"}]})
    );
}

#[tokio::test]
async fn empty_text_is_zero_without_a_request() {
    let api = FakeApi::start(|_| Reply::tokens(99)).await;
    let count = counter(&api).count("").await.unwrap();
    assert_eq!((count.tokens, count.exactness), (0, Exactness::Exact));
    assert!(api.requests().is_empty());
}

#[tokio::test]
async fn one_client_is_reused_across_calls() {
    let api = FakeApi::start(|i| Reply::tokens(10 + i as u64)).await;
    let counter = counter(&api);
    let clone = counter.clone();
    for i in 0..5u64 {
        let c = if i % 2 == 0 { &counter } else { &clone };
        assert_eq!(c.count("ping").await.unwrap().tokens, 10 + i);
    }
    assert_eq!(api.requests().len(), 5);
    assert_eq!(
        api.connections(),
        1,
        "every request should use the pooled connection"
    );
}

/// Each way the API can be unavailable: the fail-open counter answers with the estimator,
/// marks the result estimated, and warns once for the cause however often it happens.
async fn assert_falls_back(
    counter: tokenbudget_counter::FailOpenClaudeCounter,
    cause: FallbackCause,
) {
    let (logs, _guard) = logs::capture();
    let text = "How many tokens does this sentence have?";
    let expected = Estimator::default().count_sync(text);
    for _ in 0..3 {
        let count = counter.count(text).await.unwrap();
        assert_eq!(count.tokens, expected.tokens, "{cause}");
        assert_eq!(
            count.counter,
            CounterId::Estimator(Encoding::Cl100kBase),
            "{cause}"
        );
        assert_eq!(count.exactness, Exactness::Estimated, "{cause}");
    }
    let messages = counter.count_messages(&conversation()).await.unwrap();
    assert_eq!(messages.exactness, Exactness::Estimated);
    assert_eq!(
        messages.tokens,
        Estimator::default()
            .count_messages_sync(&conversation())
            .tokens
    );
    assert_eq!(
        logs.warned_causes(),
        vec![cause.as_str().to_owned()],
        "{cause}: {:?}",
        logs.all()
    );
    let warning = &logs.at(Level::WARN)[0];
    assert!(
        warning.fields["counter"].contains("ClaudeCounter"),
        "{warning:?}"
    );
    assert!(!warning.fields["error"].is_empty());
    assert_eq!(
        logs.at(Level::DEBUG).len(),
        3,
        "repeats are logged at debug level"
    );
}

#[tokio::test]
async fn http_failures_fall_back_and_warn_once_per_cause() {
    for (reply, cause) in [
        (
            Reply::error(429, "rate_limit_error", "slow down"),
            FallbackCause::RateLimited,
        ),
        (
            Reply::error(500, "api_error", "oops"),
            FallbackCause::ServerError,
        ),
        (
            Reply::json(503, "<html>unavailable</html>"),
            FallbackCause::ServerError,
        ),
        (
            Reply::error(529, "overloaded_error", "Overloaded"),
            FallbackCause::Overloaded,
        ),
        (
            Reply::error(401, "authentication_error", "invalid x-api-key"),
            FallbackCause::Unauthorized,
        ),
        (
            Reply::json(200, "not json"),
            FallbackCause::MalformedResponse,
        ),
        (
            Reply::json(200, r#"{"tokens": 5}"#),
            FallbackCause::MalformedResponse,
        ),
        (
            Reply::json(200, r#"{"input_tokens": -1}"#),
            FallbackCause::MalformedResponse,
        ),
    ] {
        let api = FakeApi::start(move |_| reply.clone()).await;
        assert_falls_back(counter(&api).fail_open(), cause).await;
        assert_eq!(api.requests().len(), 4, "{cause}: every call tried the API");
    }
}

#[tokio::test]
async fn a_missing_key_falls_back_without_a_request() {
    let api = FakeApi::start(|_| Reply::tokens(1)).await;
    let counter = ClaudeConfig::new(MODEL)
        .with_base_url(api.base_url())
        .with_api_key_env("TOKENBUDGET_COUNTER_TEST_UNSET_KEY")
        .build()
        .unwrap();
    match counter.count("hi").await {
        Err(Error::MissingApiKey { env_var }) => {
            assert_eq!(env_var, "TOKENBUDGET_COUNTER_TEST_UNSET_KEY")
        }
        other => panic!("expected MissingApiKey, got {other:?}"),
    }
    assert_falls_back(counter.fail_open(), FallbackCause::MissingApiKey).await;
    assert!(api.requests().is_empty());
}

#[tokio::test]
async fn a_network_error_falls_back() {
    // A port that was just free: nothing listens there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base_url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let counter = ClaudeConfig::new(MODEL)
        .with_base_url(base_url)
        .with_api_key(KEY)
        .build()
        .unwrap();
    assert!(matches!(
        counter.count("hi").await,
        Err(Error::Network { .. })
    ));
    assert_falls_back(counter.fail_open(), FallbackCause::Network).await;
}

#[tokio::test]
async fn the_timeout_is_enforced_and_falls_back() {
    let api = FakeApi::start(|_| Reply::tokens(7).delayed(Duration::from_secs(30))).await;
    let timeout = Duration::from_millis(300);
    let counter = ClaudeConfig::new(MODEL)
        .with_base_url(api.base_url())
        .with_api_key(KEY)
        .with_timeout(timeout)
        .build()
        .unwrap();

    let started = Instant::now();
    let result = counter.count("slow").await;
    let elapsed = started.elapsed();
    assert!(
        matches!(result, Err(Error::Timeout { timeout: t }) if t == timeout),
        "{result:?}"
    );
    // Not a performance assertion: without the timeout this call would take 30 s.
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");

    assert_falls_back(counter.fail_open(), FallbackCause::Timeout).await;
}

#[tokio::test]
async fn different_causes_each_warn_once_and_success_rearms() {
    // 429, 429, 500, 500, success, 429, then success.
    let api = FakeApi::start(|i| match i {
        0 | 1 | 5 => Reply::error(429, "rate_limit_error", "slow down"),
        2 | 3 => Reply::error(500, "api_error", "oops"),
        _ => Reply::tokens(5),
    })
    .await;
    let counter = counter(&api).fail_open();
    let (logs, _guard) = logs::capture();
    let mut exact = Vec::new();
    for _ in 0..7 {
        exact.push(counter.count("x y z").await.unwrap().is_exact());
    }
    assert_eq!(exact, [false, false, false, false, true, false, true]);
    assert_eq!(
        logs.warned_causes(),
        ["rate_limited", "server_error", "rate_limited"]
    );
    assert_eq!(
        logs.at(Level::INFO).len(),
        2,
        "one 're-armed' note per recovery"
    );
}

#[tokio::test]
async fn invalid_requests_are_returned_not_hidden() {
    for (status, kind) in [
        (400, "invalid_request_error"),
        (404, "not_found_error"),
        (413, "request_too_large"),
    ] {
        let api = FakeApi::start(move |_| {
            Reply::error(status, kind, "messages: at least one message is required")
        })
        .await;
        let (logs, _guard) = logs::capture();
        let result = counter(&api).fail_open().count("hi").await;
        match result {
            Err(
                ref e @ Error::Api {
                    status: s,
                    ref error_type,
                    ref message,
                },
            ) => {
                assert_eq!(s, status);
                assert_eq!(error_type.as_deref(), Some(kind));
                assert!(message.contains("at least one message"));
                assert_eq!(e.fallback_cause(), None);
            }
            other => panic!("{status}: expected Error::Api, got {other:?}"),
        }
        assert!(
            logs.at(Level::WARN).is_empty(),
            "{status}: an invalid request is not an outage"
        );
    }
}

#[tokio::test]
async fn a_tool_role_message_is_an_error_before_any_request() {
    let api = FakeApi::start(|_| Reply::tokens(1)).await;
    let messages = [Message::user("hi"), Message::new(Role::Tool, "42")];
    let result = counter(&api).fail_open().count_messages(&messages).await;
    assert!(
        matches!(result, Err(Error::InvalidMessage { index: 1, .. })),
        "{result:?}"
    );
    assert!(api.requests().is_empty());
}

#[test]
fn the_config_debug_output_hides_the_key() {
    let config = ClaudeConfig::new(MODEL).with_api_key(KEY);
    let shown = format!("{config:?}");
    assert!(!shown.contains(KEY), "{shown}");
    assert!(shown.contains("redacted"));
}

#[test]
fn a_bad_base_url_is_a_config_error() {
    for url in ["not a url", "ftp://example.com"] {
        let result = ClaudeConfig::new(MODEL).with_base_url(url).build();
        assert!(matches!(result, Err(Error::Config(_))), "{url}");
    }
}
