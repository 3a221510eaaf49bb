//! Model names as users type them, unknown models, and overrides.

use tokenbudget_prices::{Error, MicroUsd, PriceTable, Usage};

#[test]
fn aliases_resolve_to_the_snapshot_entries() {
    let t = PriceTable::embedded();
    let cases = [
        // (typed, entry that prices it)
        ("claude-sonnet-4-5", "claude-sonnet-4-5"),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5-20250929"),
        ("CLAUDE-SONNET-4-5", "claude-sonnet-4-5"),
        ("anthropic/claude-sonnet-4-5", "claude-sonnet-4-5"),
        ("anthropic/claude-sonnet-4.5", "claude-sonnet-4-5"),
        ("claude-opus-4-1", "claude-opus-4-1"),
        ("claude-opus-4-1-20250805", "claude-opus-4-1-20250805"),
        ("claude-haiku-4-5-20251001", "claude-haiku-4-5-20251001"),
        // Undated with only dated (and -latest) entries: the newest date.
        ("claude-3-7-sonnet", "claude-3-7-sonnet-20250219"),
        ("claude-3-5-sonnet", "claude-3-5-sonnet-20241022"),
        ("claude-3-5-haiku", "claude-3-5-haiku-20241022"),
        ("claude-3-7-sonnet-latest", "claude-3-7-sonnet-latest"),
        ("claude-sonnet-4", "claude-sonnet-4-20250514"),
        ("claude-opus-4", "claude-opus-4-20250514"),
        ("claude-3-haiku", "claude-3-haiku-20240307"),
        // A dated id the table lacks: its undated alias.
        ("claude-opus-4-6-20991231", "claude-opus-4-6"),
        // Bedrock and Vertex spellings.
        (
            "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "claude-sonnet-4-5-20250929",
        ),
        (
            "bedrock/global.anthropic.claude-haiku-4-5-20251001-v1:0",
            "claude-haiku-4-5-20251001",
        ),
        (
            "vertex_ai/claude-sonnet-4-5@20250929",
            "claude-sonnet-4-5-20250929",
        ),
        ("vertex_ai/claude-opus-4-6@default", "claude-opus-4-6"),
        // OpenAI.
        ("gpt-4o", "gpt-4o"),
        ("openai/gpt-4o", "gpt-4o"),
        ("gpt-4o-2024-08-06", "gpt-4o-2024-08-06"),
        ("gpt-4.1-mini", "gpt-4.1-mini"),
        ("o3", "o3"),
        ("o4-mini-2025-04-16", "o4-mini-2025-04-16"),
        ("gpt-5", "gpt-5"),
        ("gpt-5-mini", "gpt-5-mini"),
        ("openai/gpt-5-nano-2025-08-07", "gpt-5-nano-2025-08-07"),
        ("gpt-5-pro", "gpt-5-pro"),
    ];
    for (typed, want) in cases {
        match t.resolve(typed) {
            Ok(r) => assert_eq!(r.name, want, "{typed}"),
            Err(e) => panic!("{typed}: {e}"),
        }
    }
}

#[test]
fn an_undated_name_with_only_a_latest_entry_resolves_to_it() {
    let t = PriceTable::from_litellm_json(
        r#"{"foo-latest": {"input_cost_per_token": 1e-06}, "bar-20250101": {"input_cost_per_token": 1e-06},
            "bar-20250601": {"input_cost_per_token": 2e-06}, "bar-latest": {"input_cost_per_token": 3e-06}}"#,
    )
    .unwrap();
    assert_eq!(t.resolve("foo").unwrap().name, "foo-latest");
    // A dated entry is preferred to -latest, and the newest date to older ones.
    assert_eq!(t.resolve("bar").unwrap().name, "bar-20250601");
    assert_eq!(t.resolve("bar-latest").unwrap().name, "bar-latest");
    assert!(
        t.resolve("foo-20250101").is_err(),
        "a dated id does not reach -latest"
    );
}

#[test]
fn an_unknown_model_is_an_error_naming_it_with_suggestions() {
    let t = PriceTable::embedded();
    let err = t.cost("claude-sonet-4-5", &Usage::new(1, 1)).unwrap_err();
    let Error::UnknownModel { model, suggestions } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(model, "claude-sonet-4-5");
    assert_eq!(
        suggestions.first().map(String::as_str),
        Some("claude-sonnet-4-5")
    );
    assert!(suggestions.len() <= 3, "{suggestions:?}");
    let text = err.to_string();
    assert!(
        text.starts_with(
            "unknown model \"claude-sonet-4-5\": no price for it (did you mean claude-sonnet-4-5"
        ),
        "{text}"
    );

    // Nothing close: no suggestions, still an error.
    let err = t.resolve("llama-3.1-405b-instruct").unwrap_err();
    assert_eq!(
        err,
        Error::UnknownModel {
            model: "llama-3.1-405b-instruct".into(),
            suggestions: vec![]
        }
    );
    assert_eq!(
        err.to_string(),
        "unknown model \"llama-3.1-405b-instruct\": no price for it"
    );
    assert!(t.resolve("").is_err());
}

#[test]
fn overrides_take_precedence_per_model_under_every_alias() {
    let overrides = PriceTable::from_litellm_json(
        r#"{
          "claude-sonnet-4-5": {"input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06},
          "my-local-model": {"input_cost_per_token": 1e-07, "output_cost_per_token": 1e-07}
        }"#,
    )
    .unwrap();
    let base = PriceTable::embedded();
    let usage = Usage::new(1_000_000, 1_000_000);
    assert_eq!(
        base.cost("claude-sonnet-4-5", &usage).unwrap(),
        MicroUsd::new(18_000_000),
        "embedded: $3 + $15"
    );
    let t = base.with_overrides(overrides);
    // The override answers for the undated name, the dated id and the routed name alike.
    for name in [
        "claude-sonnet-4-5",
        "claude-sonnet-4-5-20250929",
        "anthropic/claude-sonnet-4-5",
    ] {
        let r = t.resolve(name).unwrap();
        assert_eq!(r.name, "claude-sonnet-4-5", "{name}");
        assert_eq!(
            t.cost(name, &usage).unwrap(),
            MicroUsd::new(3_000_000),
            "{name}"
        );
    }
    // A whole-entry replacement: the override lists no cache prices, so none are inherited.
    let cached = Usage {
        cache_read: 10,
        ..Usage::default()
    };
    assert!(matches!(
        t.cost("claude-sonnet-4-5", &cached),
        Err(Error::MissingPrice { .. })
    ));
    // Models the override does not name keep the snapshot's prices.
    assert_eq!(
        t.cost("gpt-4o", &usage).unwrap(),
        MicroUsd::new(2_500_000 + 10_000_000)
    );
    // New models come from the override.
    assert_eq!(
        t.cost("my-local-model", &usage).unwrap(),
        MicroUsd::new(200_000)
    );
    // The snapshot date is still the embedded one; a JSON-only table has none.
    assert_eq!(t.snapshot_date(), Some(tokenbudget_prices::SNAPSHOT_DATE));
    assert_eq!(
        PriceTable::from_litellm_json("{}").unwrap().snapshot_date(),
        None
    );
    // Names are listed once each.
    let names: Vec<&str> = t.names().collect();
    assert_eq!(
        names.iter().filter(|n| **n == "claude-sonnet-4-5").count(),
        1
    );
    assert!(names.contains(&"my-local-model"));
    assert_eq!(t.len(), PriceTable::embedded().len() + 1);
}

#[test]
fn the_topmost_of_several_overrides_wins() {
    let one = PriceTable::from_litellm_json(r#"{"m": {"input_cost_per_token": 1e-06}}"#).unwrap();
    let two = PriceTable::from_litellm_json(r#"{"m": {"input_cost_per_token": 2e-06}}"#).unwrap();
    let t = PriceTable::embedded()
        .with_overrides(one)
        .with_overrides(two);
    assert_eq!(
        t.cost("m", &Usage::new(1_000_000, 0)).unwrap(),
        MicroUsd::new(2_000_000)
    );
}
