//! Reading LiteLLM's price file format.

use tokenbudget_prices::{Error, MicroUsd, PicoUsd, PriceTable, TokenKind, Usage};

#[test]
fn the_embedded_snapshot_parses_dated_and_covers_current_models() {
    let t = PriceTable::embedded();
    assert_eq!(t.snapshot_date(), Some("2026-12-01"));
    assert!(t.len() > 150, "{}", t.len());
    // Every entry is usable: no price was rejected as inexact.
    for name in t.names() {
        let r = t.resolve(name);
        assert!(r.is_ok(), "{name}: {r:?}");
        let price = r.unwrap().price;
        assert!(
            price.base.get(TokenKind::Input).is_some(),
            "{name} has an input price"
        );
        assert!(
            matches!(price.provider.as_deref(), Some("anthropic" | "openai")),
            "{name}: {:?}",
            price.provider
        );
    }
    let required = [
        "claude-3-haiku-20240307",
        "claude-3-opus-20240229",
        "claude-3-5-haiku-20241022",
        "claude-3-5-sonnet-20241022",
        "claude-3-7-sonnet-20250219",
        "claude-sonnet-4-20250514",
        "claude-opus-4-20250514",
        "claude-opus-4-1",
        "claude-opus-4-1-20250805",
        "claude-sonnet-4-5",
        "claude-sonnet-4-5-20250929",
        "claude-haiku-4-5",
        "claude-haiku-4-5-20251001",
        "claude-opus-4-5",
        "claude-opus-4-5-20251101",
        "claude-sonnet-4-6",
        "claude-opus-4-6",
        "claude-opus-4-7",
        "claude-sonnet-5",
        "gpt-4o",
        "gpt-4o-mini",
        "gpt-4o-2024-08-06",
        "gpt-4.1",
        "gpt-4.1-mini",
        "gpt-4.1-nano",
        "o1",
        "o3",
        "o3-mini",
        "o4-mini",
        "gpt-5",
        "gpt-5-mini",
        "gpt-5-nano",
        "gpt-5.1",
        "gpt-5.2",
    ];
    let names: Vec<&str> = t.names().collect();
    for model in required {
        assert!(names.contains(&model), "{model} missing from the snapshot");
    }
}

#[test]
fn embedded_prices_match_the_providers_published_rates() {
    // $ per MTok, from Anthropic's and OpenAI's pricing pages, per kind:
    // (model, input, output, 5m write, 1h write, cache read), in µ$ per MTok.
    let t = PriceTable::embedded();
    let cases: &[(&str, [Option<u64>; 5])] = &[
        (
            "claude-sonnet-4-5-20250929",
            [
                Some(3_000_000),
                Some(15_000_000),
                Some(3_750_000),
                Some(6_000_000),
                Some(300_000),
            ],
        ),
        (
            "claude-opus-4-1-20250805",
            [
                Some(15_000_000),
                Some(75_000_000),
                Some(18_750_000),
                Some(30_000_000),
                Some(1_500_000),
            ],
        ),
        (
            "claude-haiku-4-5",
            [
                Some(1_000_000),
                Some(5_000_000),
                Some(1_250_000),
                Some(2_000_000),
                Some(100_000),
            ],
        ),
        (
            "claude-opus-4-5",
            [
                Some(5_000_000),
                Some(25_000_000),
                Some(6_250_000),
                Some(10_000_000),
                Some(500_000),
            ],
        ),
        (
            "gpt-4o",
            [
                Some(2_500_000),
                Some(10_000_000),
                None,
                None,
                Some(1_250_000),
            ],
        ),
        (
            "gpt-5",
            [Some(1_250_000), Some(10_000_000), None, None, Some(125_000)],
        ),
    ];
    for (model, want) in cases {
        let price = t.resolve(model).unwrap().price;
        let got: Vec<Option<u64>> = TokenKind::ALL
            .iter()
            .map(|k| price.base.get(*k).map(|p| p.per_million_tokens().micros()))
            .collect();
        assert_eq!(got, want, "{model}");
    }
}

#[test]
fn unknown_fields_and_non_chat_entries_are_ignored() {
    let t = PriceTable::from_litellm_json(
        r#"{
          "sample_spec": {"mode": "one of: chat, embedding", "input_cost_per_token": 0.0},
          "text-embedding-3-small": {"mode": "embedding", "input_cost_per_token": 2e-08},
          "dall-e-3": {"mode": "image_generation", "output_cost_per_image": 0.04},
          "odd": "not an object",
          "gpt-x": {
            "mode": "chat", "litellm_provider": "openai",
            "input_cost_per_token": 1e-06, "output_cost_per_token": 4e-06,
            "input_cost_per_token_batches": 5e-07, "output_cost_per_token_priority": 8e-06,
            "supports_vision": true, "max_input_tokens": 128000,
            "search_context_cost_per_query": {"search_context_size_low": 0.01},
            "some_future_field": [1, 2, {"x": null}],
            "cache_read_input_token_cost": null
          },
          "gpt-x-pro": {"mode": "responses", "input_cost_per_token": 1.5e-05},
          "no-prices": {"mode": "chat", "max_tokens": 10}
        }"#,
    )
    .unwrap();
    let names: Vec<&str> = t.names().collect();
    assert_eq!(names, ["gpt-x", "gpt-x-pro"]);
    let price = t.resolve("gpt-x").unwrap().price;
    assert_eq!(price.provider.as_deref(), Some("openai"));
    assert_eq!(
        price.base.get(TokenKind::Input),
        Some(PicoUsd::new(1_000_000))
    );
    assert_eq!(
        price.base.get(TokenKind::CacheRead),
        None,
        "null is no price"
    );
    assert!(price.tiers.is_empty());
    assert!(matches!(
        t.resolve("text-embedding-3-small"),
        Err(Error::UnknownModel { .. })
    ));
}

#[test]
fn prices_are_read_from_the_number_text_and_inexact_ones_rejected_per_entry() {
    let t = PriceTable::from_litellm_json(
        r#"{
          "exact": {"input_cost_per_token": 1.875e-05, "output_cost_per_token": 0.000075},
          "float-noise": {"input_cost_per_token": 2.0000000000000002E-7},
          "negative": {"input_cost_per_token": -1e-06},
          "text": {"input_cost_per_token": "1e-06"}
        }"#,
    )
    .unwrap();
    let exact = t.resolve("exact").unwrap().price;
    assert_eq!(
        exact.base.get(TokenKind::Input),
        Some(PicoUsd::new(18_750_000))
    );
    assert_eq!(
        exact.base.get(TokenKind::Output),
        Some(PicoUsd::new(75_000_000))
    );

    let err = t.cost("float-noise", &Usage::new(1, 0)).unwrap_err();
    assert_eq!(
        err,
        Error::InvalidPrice {
            model: "float-noise".into(),
            field: "input_cost_per_token".into(),
            text: "2.0000000000000002E-7".into(),
            reason: "is not a whole number of pico-dollars per token".into(),
        }
    );
    assert!(matches!(
        t.resolve("negative"),
        Err(Error::InvalidPrice { reason, .. }) if reason == "is negative"
    ));
    assert!(matches!(
        t.resolve("text"),
        Err(Error::InvalidPrice { reason, .. }) if reason == "is not a number"
    ));
}

#[test]
fn tiers_are_read_from_above_n_k_tokens_fields() {
    let t = PriceTable::from_litellm_json(
        r#"{"m": {
            "input_cost_per_token": 1e-07, "output_cost_per_token": 5e-07,
            "input_cost_per_token_above_100k_tokens": 5e-07,
            "output_cost_per_token_above_100k_tokens": 2.5e-06,
            "input_cost_per_token_above_272k_tokens": 1e-06
        }}"#,
    )
    .unwrap();
    let price = t.resolve("m").unwrap().price;
    let thresholds: Vec<u64> = price.tiers.iter().map(|t| t.above_input_tokens).collect();
    assert_eq!(thresholds, [100_000, 272_000]);
    // Above 272k: input at the 272k tier's rate; output, which that tier lacks, at the base.
    let cost = t.price("m", &Usage::new(300_000, 1_000)).unwrap();
    assert_eq!(cost.tier_above_input_tokens, Some(272_000));
    assert_eq!(cost.total, MicroUsd::new(300_000 + 500));
    // Between the two: the 100k tier.
    let cost = t.price("m", &Usage::new(150_000, 1_000)).unwrap();
    assert_eq!(cost.tier_above_input_tokens, Some(100_000));
    assert_eq!(cost.total, MicroUsd::new(75_000 + 2_500));
}

#[test]
fn a_file_that_is_not_an_object_of_entries_fails_to_load() {
    for text in ["", "[]", "42", "{\"a\": 1", "not json"] {
        let err = PriceTable::from_litellm_json(text).unwrap_err();
        assert!(matches!(err, Error::InvalidFile { .. }), "{text}: {err:?}");
    }
}

#[test]
fn from_path_reads_a_file_and_names_it_in_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("prices.json");
    std::fs::write(&path, r#"{"m": {"input_cost_per_token": 1e-06}}"#).unwrap();
    let t = PriceTable::from_path(&path).unwrap();
    assert_eq!(
        t.cost("m", &Usage::new(1_000, 0)).unwrap(),
        MicroUsd::new(1_000)
    );

    let missing = dir.path().join("missing.json");
    let err = PriceTable::from_path(&missing).unwrap_err();
    assert!(
        matches!(&err, Error::Io { path, .. } if *path == missing),
        "{err:?}"
    );
    assert!(err.to_string().contains("missing.json"), "{err}");

    std::fs::write(&path, "[1]").unwrap();
    let err = PriceTable::from_path(&path).unwrap_err();
    assert!(err.to_string().contains("prices.json"), "{err}");
}
