//! Message parsing and the cookbook's per-message overhead.

use serde_json::json;
use tokenbudget_counter::{Content, ContentBlock, Estimator, LocalCounter, Message, Role};

/// The cookbook's own example (`How_to_count_tokens_with_tiktoken.ipynb`): names on the
/// few-shot system messages, several messages.
fn cookbook_example() -> Vec<Message> {
    vec![
        Message::system("You are a helpful, pattern-following assistant that translates corporate jargon into plain English."),
        Message::system("New synergies will help drive top-line growth.").with_name("example_user"),
        Message::system("Things working well together will increase revenue.").with_name("example_assistant"),
        Message::system("Let's circle back when we have more bandwidth to touch base on opportunities for increased leverage.").with_name("example_user"),
        Message::system("Let's talk later when we're less busy about how to do better.").with_name("example_assistant"),
        Message::user("This late pivot means we don't have time to boil the ocean for the client deliverable."),
    ]
}

#[cfg(feature = "tiktoken")]
mod openai {
    use super::*;
    use tokenbudget_counter::{
        Encoding, Exactness, OpenAiCounter, REPLY_PRIMING_TOKENS, TOKENS_PER_MESSAGE,
        TOKENS_PER_NAME,
    };

    fn mixed_example() -> Vec<Message> {
        vec![
            Message::user("Hi! 👋 Can you count <|endoftext|> for me?").with_name("alice"),
            Message::assistant("Sure — that's 7 tokens in cl100k."),
            Message::user("日本語のテキストも数えて。").with_name("bob_2"),
        ]
    }

    /// Expected values from the cookbook's `num_tokens_from_messages` run with Python tiktoken
    /// 0.14 (`encode(value, disallowed_special=())`); 129 is also the number the cookbook
    /// prints for gpt-4 and gpt-3.5-turbo.
    #[test]
    fn message_counts_match_the_cookbook_function() {
        let cl100k = OpenAiCounter::for_model("gpt-4");
        let o200k = OpenAiCounter::for_model("gpt-4o");
        for (counter, example, mixed) in [(cl100k, 129, 62), (o200k, 124, 59)] {
            let enc = counter.encoding();
            assert_eq!(
                counter.count_messages_sync(&cookbook_example()).tokens,
                example,
                "{enc}"
            );
            assert_eq!(
                counter.count_messages_sync(&mixed_example()).tokens,
                mixed,
                "{enc}"
            );
            assert_eq!(
                counter
                    .count_messages_sync(&[Message::user("hello world")])
                    .tokens,
                9
            );
            assert_eq!(
                counter.count_messages_sync(&[]).tokens,
                REPLY_PRIMING_TOKENS
            );
        }
    }

    #[test]
    fn the_overhead_is_3_per_message_1_per_name_and_3_for_priming() {
        let counter = OpenAiCounter::new(Encoding::Cl100kBase);
        let messages = mixed_example();
        let mut expected = REPLY_PRIMING_TOKENS;
        for m in &messages {
            let Content::Text(text) = &m.content else {
                unreachable!()
            };
            expected += TOKENS_PER_MESSAGE
                + counter.count_tokens(m.role.as_str())
                + counter.count_tokens(text);
            if let Some(name) = &m.name {
                expected += counter.count_tokens(name) + TOKENS_PER_NAME;
            }
        }
        let count = counter.count_messages_sync(&messages);
        assert_eq!(count.tokens, expected);
        assert_eq!(count.exactness, Exactness::Exact);

        // A name costs its own tokens plus exactly one.
        let plain = counter.count_messages_sync(&[Message::user("hi")]).tokens;
        let named = counter
            .count_messages_sync(&[Message::user("hi").with_name("alice")])
            .tokens;
        assert_eq!(named - plain, counter.count_tokens("alice") + 1);
        // Each further message adds 3 plus its role and content.
        let two = counter
            .count_messages_sync(&[Message::user("hi"), Message::user("hi")])
            .tokens;
        assert_eq!(
            two - plain,
            3 + counter.count_tokens("user") + counter.count_tokens("hi")
        );
    }

    #[test]
    fn block_content_is_counted_but_marked_estimated() {
        let counter = OpenAiCounter::new(Encoding::O200kBase);
        let blocks = Message::assistant(vec![
            ContentBlock::Text {
                text: "Checking.".into(),
            },
            ContentBlock::ToolUse {
                id: "t1".into(),
                name: "lookup".into(),
                input: json!({"q": "x"}),
            },
        ]);
        let count = counter.count_messages_sync(&[blocks]);
        let expected = 3
            + 3
            + counter.count_tokens("assistant")
            + counter.count_tokens("Checking.")
            + counter.count_tokens("lookup")
            + counter.count_tokens(r#"{"q":"x"}"#);
        assert_eq!(count.tokens, expected);
        assert_eq!(count.exactness, Exactness::Estimated);
    }
}

#[test]
fn the_estimator_adds_the_same_overhead() {
    let estimator = Estimator::default();
    let with = estimator.count_messages_sync(&cookbook_example()).tokens;
    let texts: u64 = cookbook_example()
        .iter()
        .map(|m| {
            let Content::Text(t) = &m.content else {
                unreachable!()
            };
            3 + estimator.estimate(m.role.as_str())
                + estimator.estimate(t)
                + m.name.as_deref().map_or(0, |n| estimator.estimate(n) + 1)
        })
        .sum();
    assert_eq!(with, texts + 3);
}

#[test]
fn anthropic_and_openai_json_arrays_parse() {
    let json = r#"[
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": "Answer in French."},
        {"role": "user", "name": "alice", "content": [{"type": "text", "text": "Hi"}]},
        {"role": "assistant", "content": null},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}}
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "18°C"}], "is_error": false}
        ]},
        {"role": "tool", "content": "42"}
    ]"#;
    let messages: Vec<Message> = serde_json::from_str(json).unwrap();
    let roles: Vec<Role> = messages.iter().map(|m| m.role).collect();
    assert_eq!(
        roles,
        [
            Role::System,
            Role::Developer,
            Role::User,
            Role::Assistant,
            Role::Assistant,
            Role::User,
            Role::Tool
        ]
    );
    assert_eq!(messages[2].name.as_deref(), Some("alice"));
    assert_eq!(
        messages[3].content,
        Content::Text(String::new()),
        "null content reads as empty"
    );
    let ContentBlock::ToolResult {
        content: Some(Content::Blocks(inner)),
        is_error,
        ..
    } = &match &messages[5].content {
        Content::Blocks(b) => b,
        other => panic!("{other:?}"),
    }[0]
    else {
        panic!("expected a tool result with blocks");
    };
    assert_eq!(
        inner,
        &vec![ContentBlock::Text {
            text: "18°C".into()
        }]
    );
    assert_eq!(*is_error, Some(false));

    // Unknown block types and roles are rejected rather than silently dropped.
    assert!(
        serde_json::from_str::<Message>(r#"{"role": "user", "content": [{"type": "image"}]}"#)
            .is_err()
    );
    assert!(serde_json::from_str::<Message>(r#"{"role": "robot", "content": "x"}"#).is_err());
}

#[test]
fn messages_serialize_to_the_api_shape() {
    let m = Message::assistant(vec![
        ContentBlock::Text { text: "Hi".into() },
        ContentBlock::ToolUse {
            id: "t".into(),
            name: "f".into(),
            input: json!({}),
        },
        ContentBlock::ToolResult {
            tool_use_id: "t".into(),
            content: None,
            is_error: None,
        },
    ]);
    assert_eq!(
        serde_json::to_value(&m).unwrap(),
        json!({"role": "assistant", "content": [
            {"type": "text", "text": "Hi"},
            {"type": "tool_use", "id": "t", "name": "f", "input": {}},
            {"type": "tool_result", "tool_use_id": "t"}
        ]})
    );
    assert_eq!(
        serde_json::to_value(Message::user("x").with_name("n")).unwrap(),
        json!({"role": "user", "name": "n", "content": "x"})
    );
}
