//! The route table read from the TOML of issue 14, matched, validated.

use tokenbudget_translate::route::{RouteConfig, UpstreamKind};
use tokenbudget_translate::{MaxTokensField, Reasoning, RouteTarget, TranslateError};

/// Issue 14's example, as written (comments included).
const ISSUE_TOML: &str = r#"
[upstreams.local]
kind = "openai"                  # "anthropic" (pass-through) or "openai" (translate)
url = "http://127.0.0.1:1234/v1"
# api_key_env = "LOCAL_API_KEY"  # optional: the env var holding this upstream's key

[[routes]]
match = "claude-haiku-*"         # exact name or glob
upstream = "local"
model = "qwen3-coder-30b"        # the name sent upstream; omitted: the incoming name

[[routes]]
match = "*"
upstream = "local"
"#;

fn parse(text: &str) -> Result<RouteConfig, toml::de::Error> {
    toml::from_str(text)
}

#[test]
fn the_issue_example_parses_and_routes_first_match_wins() {
    let config = parse(ISSUE_TOML).unwrap();
    config.validate().unwrap();
    let local = &config.upstreams["local"];
    assert_eq!(local.kind, UpstreamKind::Openai);
    assert_eq!(local.url, "http://127.0.0.1:1234/v1");
    assert_eq!(local.api_key_env, None);

    let haiku = config.resolve("claude-haiku-4-5-20251001").unwrap();
    assert_eq!(
        (haiku.route, haiku.upstream_name, haiku.model.as_str()),
        (0, "local", "qwen3-coder-30b")
    );
    assert_eq!(haiku.target(), RouteTarget::new("qwen3-coder-30b"));

    let sonnet = config.resolve("claude-sonnet-4-5").unwrap();
    assert_eq!(
        (sonnet.route, sonnet.model.as_str()),
        (1, "claude-sonnet-4-5"),
        "omitted model: the incoming name"
    );

    let listed: Vec<_> = config
        .routed_models()
        .iter()
        .map(|m| (m.pattern, m.upstream, m.model))
        .collect();
    assert_eq!(
        listed,
        [
            ("claude-haiku-*", "local", Some("qwen3-coder-30b")),
            ("*", "local", None)
        ]
    );
}

#[test]
fn no_match_means_the_default_upstream() {
    let config = parse(
        r#"
[upstreams.lm]
kind = "openai"
url = "http://127.0.0.1:1234/v1"
api_key_env = "LM_KEY"
reasoning = "effort"
max_tokens_field = "max_completion_tokens"

[upstreams.anthropic]
kind = "anthropic"
url = "https://api.anthropic.com"

[[routes]]
match = "claude-opus-4"
upstream = "anthropic"

[[routes]]
match = "claude-haiku-?-5"
upstream = "lm"
model = "qwen3"
"#,
    )
    .unwrap();
    config.validate().unwrap();
    assert!(config.resolve("claude-sonnet-4-5").is_none());
    assert!(
        config.resolve("claude-opus-4-1").is_none(),
        "exact names match exactly"
    );
    assert_eq!(
        config.resolve("claude-opus-4").unwrap().upstream.kind,
        UpstreamKind::Anthropic
    );
    let haiku = config.resolve("claude-haiku-4-5").unwrap();
    assert_eq!(haiku.upstream.api_key_env.as_deref(), Some("LM_KEY"));
    assert_eq!(
        haiku.target(),
        RouteTarget::new("qwen3")
            .with_reasoning(Reasoning::Effort)
            .with_max_tokens_field(MaxTokensField::MaxCompletionTokens)
    );
    assert!(RouteConfig::default().resolve("anything").is_none());
}

#[test]
fn mistakes_are_caught_at_start_naming_the_setting() {
    let setting = |text: &str| match parse(text).unwrap().validate() {
        Err(TranslateError::InvalidRoute { setting, message }) => format!("{setting}: {message}"),
        other => panic!("{other:?}"),
    };
    let unknown = setting("[upstreams.a]\nkind = \"openai\"\nurl = \"http://x/v1\"\n[[routes]]\nmatch = \"*\"\nupstream = \"b\"\n");
    assert_eq!(
        unknown,
        "routes[0].upstream: unknown upstream \"b\" (known: a)"
    );
    let url = setting("[upstreams.a]\nkind = \"openai\"\nurl = \"127.0.0.1:1234\"\n");
    assert_eq!(
        url,
        "upstreams.a.url: 127.0.0.1:1234 is not an http:// or https:// URL"
    );
    let empty = setting("[upstreams.a]\nkind = \"openai\"\nurl = \"http://x\"\n[[routes]]\nmatch = \"\"\nupstream = \"a\"\n");
    assert_eq!(empty, "routes[0].match: must not be empty");

    // Typos and bad values fail to parse, with the key named.
    let typo =
        parse("[upstreams.a]\nkind = \"openai\"\nurl = \"http://x\"\napi_key = \"sk-123\"\n")
            .unwrap_err();
    assert!(typo.to_string().contains("api_key"), "{typo}");
    let kind = parse("[upstreams.a]\nkind = \"vllm\"\nurl = \"http://x\"\n").unwrap_err();
    assert!(kind.to_string().contains("vllm"), "{kind}");
    let route = parse("[[routes]]\nmach = \"*\"\nupstream = \"a\"\n").unwrap_err();
    assert!(route.to_string().contains("mach"), "{route}");
}

#[test]
fn debug_hides_url_passwords() {
    let config =
        parse("[upstreams.a]\nkind = \"openai\"\nurl = \"https://me:hunter2@proxy.example/v1\"\n")
            .unwrap();
    let debug = format!("{config:?}");
    assert!(!debug.contains("hunter2"), "{debug}");
    assert!(debug.contains("me:***@proxy.example"), "{debug}");
}
