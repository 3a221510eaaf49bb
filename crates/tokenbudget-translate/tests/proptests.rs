//! Property tests: random Anthropic requests translate to valid Chat Completions requests;
//! random upstream chunk streams (server quirks, byte splits, cuts) translate to event
//! streams that obey Anthropic's grammar and, when the stream ended well, carry exactly the
//! content that was sent.

mod common;

use common::{accumulate, events, translate_sse, validate};
use proptest::prelude::*;
use serde_json::{json, Value};
use tokenbudget_translate::anthropic::{
    AnthropicRequest, ContentBlock, ImageSource, InputMessage, MessageContent, Role, System,
    SystemBlock, Thinking, Tool, ToolChoice, ToolResultContent,
};
use tokenbudget_translate::openai::{ChatMessage, ChatRequest, ContentPart, UserContent};
use tokenbudget_translate::{translate_request, FinishCause, Reasoning, RouteTarget};

// ---------- requests ----------

fn text() -> impl Strategy<Value = String> {
    "\\PC{0,24}"
}

fn image() -> impl Strategy<Value = ContentBlock> {
    prop_oneof![
        "[A-Za-z0-9+/]{4,16}".prop_map(|data| ContentBlock::Image {
            source: ImageSource::Base64 {
                media_type: "image/png".into(),
                data
            }
        }),
        "[a-z]{1,8}".prop_map(|p| ContentBlock::Image {
            source: ImageSource::Url {
                url: format!("https://example.com/{p}.png")
            }
        }),
    ]
}

fn user_block() -> impl Strategy<Value = ContentBlock> {
    prop_oneof![4 => text().prop_map(|text| ContentBlock::Text { text }), 1 => image()]
}

fn tool_result(id: String) -> impl Strategy<Value = ContentBlock> {
    let content = prop_oneof![
        Just(None),
        text().prop_map(|t| Some(ToolResultContent::Text(t))),
        prop::collection::vec(user_block(), 0..3).prop_map(|b| Some(ToolResultContent::Blocks(b))),
    ];
    (content, prop::option::of(any::<bool>())).prop_map(move |(content, is_error)| {
        ContentBlock::ToolResult {
            tool_use_id: id.clone(),
            content,
            is_error,
        }
    })
}

/// One user turn answering `calls`, then an assistant turn that may call tools.
fn exchange(
    turn: usize,
    calls: usize,
) -> impl Strategy<Value = (InputMessage, InputMessage, usize)> {
    let results: Vec<_> = (0..calls)
        .map(|k| tool_result(format!("toolu_{}_{k}", turn.wrapping_sub(1))))
        .collect();
    let user = (
        results,
        prop::collection::vec(user_block(), 0..3),
        any::<bool>(),
        text(),
    )
        .prop_map(move |(results, mut rest, as_string, s)| {
            let content = if results.is_empty() && as_string {
                MessageContent::Text(s)
            } else {
                let mut blocks = results;
                blocks.append(&mut rest);
                MessageContent::Blocks(blocks)
            };
            InputMessage {
                role: Role::User,
                content,
            }
        });
    let assistant = (
        prop::collection::vec(text(), 0..3),
        prop::option::of(text()),
        prop::collection::vec(("[A-Za-z]{1,8}", text()), 0..3),
    )
        .prop_map(move |(texts, thinking, uses)| {
            let mut blocks = Vec::new();
            if let Some(thinking) = thinking {
                blocks.push(ContentBlock::Thinking {
                    thinking,
                    signature: Some("sig".into()),
                });
            }
            blocks.extend(texts.into_iter().map(|text| ContentBlock::Text { text }));
            let n = uses.len();
            for (k, (name, arg)) in uses.into_iter().enumerate() {
                blocks.push(ContentBlock::ToolUse {
                    id: format!("toolu_{turn}_{k}"),
                    name,
                    input: json!({"arg": arg}),
                });
            }
            (
                InputMessage {
                    role: Role::Assistant,
                    content: MessageContent::Blocks(blocks),
                },
                n,
            )
        });
    (user, assistant).prop_map(|(u, (a, n))| (u, a, n))
}

fn conversation() -> impl Strategy<Value = Vec<InputMessage>> {
    // Up to 4 exchanges; each assistant's calls are answered by the next user turn.
    (1usize..5).prop_flat_map(|turns| {
        let mut strategy: BoxedStrategy<(Vec<InputMessage>, usize)> = Just((Vec::new(), 0)).boxed();
        for turn in 0..turns {
            strategy = strategy
                .prop_flat_map(move |(messages, calls)| {
                    exchange(turn, calls).prop_map(move |(u, a, n)| {
                        let mut messages = messages.clone();
                        messages.push(u);
                        messages.push(a);
                        (messages, n)
                    })
                })
                .boxed();
        }
        // Drop the last assistant turn half the time, so requests end on either role.
        (strategy, any::<bool>()).prop_map(|((mut messages, calls), drop_last)| {
            if drop_last && calls == 0 {
                messages.pop();
            }
            messages
        })
    })
}

fn tool() -> impl Strategy<Value = Tool> {
    ("[A-Za-z_]{1,10}", prop::option::of(text()), any::<bool>(), any::<bool>()).prop_map(
        |(name, description, meta, uri)| {
            let mut schema = json!({"type": "object", "properties": {"x": {"type": "string"}}, "required": ["x"]});
            if meta {
                schema["$schema"] = json!("http://json-schema.org/draft-07/schema#");
            }
            if uri {
                schema["properties"]["x"]["format"] = json!("uri");
            }
            Tool { name, description, input_schema: Some(schema), kind: None }
        },
    )
}

fn request() -> impl Strategy<Value = AnthropicRequest> {
    let system = prop_oneof![
        Just(None),
        text().prop_map(|t| Some(System::Text(t))),
        prop::collection::vec(text().prop_map(|text| SystemBlock::Text { text }), 0..3)
            .prop_map(|b| Some(System::Blocks(b))),
    ];
    let choice = prop_oneof![
        Just(None),
        Just(Some(ToolChoice::Auto {
            disable_parallel_tool_use: None
        })),
        Just(Some(ToolChoice::Any {
            disable_parallel_tool_use: Some(true)
        })),
        Just(Some(ToolChoice::None)),
        "[a-z]{1,5}".prop_map(|name| Some(ToolChoice::Tool {
            name,
            disable_parallel_tool_use: None
        })),
    ];
    let thinking = prop_oneof![
        Just(None),
        (1u32..40_000).prop_map(|budget_tokens| Some(Thinking::Enabled { budget_tokens })),
        Just(Some(Thinking::Disabled)),
    ];
    (
        conversation(),
        system,
        prop::option::of(prop::collection::vec(tool(), 0..4)),
        choice,
        thinking,
        prop::option::of(any::<bool>()),
        prop::option::of(prop::collection::vec("[A-Z]{1,4}", 0..3)),
        1u32..200_000,
    )
        .prop_map(
            |(
                messages,
                system,
                tools,
                tool_choice,
                thinking,
                stream,
                stop_sequences,
                max_tokens,
            )| {
                AnthropicRequest {
                    model: "claude-sonnet-4-5".into(),
                    messages,
                    system,
                    max_tokens: Some(max_tokens),
                    stop_sequences,
                    temperature: Some(0.5),
                    top_p: None,
                    top_k: None,
                    tools,
                    tool_choice,
                    thinking,
                    metadata: None,
                    stream,
                }
            },
        )
}

fn input_texts(req: &AnthropicRequest) -> (Vec<String>, usize) {
    let mut texts = Vec::new();
    let mut images = 0;
    match &req.system {
        Some(System::Text(t)) => texts.push(t.clone()),
        Some(System::Blocks(b)) => {
            texts.extend(b.iter().map(|SystemBlock::Text { text }| text.clone()))
        }
        None => {}
    }
    fn blocks(b: &[ContentBlock], texts: &mut Vec<String>, images: &mut usize) {
        for block in b {
            match block {
                ContentBlock::Text { text } => texts.push(text.clone()),
                ContentBlock::Image { .. } => *images += 1,
                ContentBlock::ToolResult {
                    content: Some(ToolResultContent::Text(t)),
                    ..
                } => texts.push(t.clone()),
                ContentBlock::ToolResult {
                    content: Some(ToolResultContent::Blocks(b)),
                    ..
                } => blocks(b, texts, images),
                _ => {}
            }
        }
    }
    for m in &req.messages {
        match &m.content {
            MessageContent::Text(t) => texts.push(t.clone()),
            MessageContent::Blocks(b) => blocks(b, &mut texts, &mut images),
        }
    }
    (
        texts.into_iter().filter(|t| !t.is_empty()).collect(),
        images,
    )
}

fn check_chat(req: &AnthropicRequest, chat: &ChatRequest) -> Result<(), TestCaseError> {
    // It is JSON a server can read back as the same request.
    let wire = serde_json::to_string(chat).unwrap();
    let back: ChatRequest = serde_json::from_str(&wire).unwrap();
    prop_assert_eq!(&back, chat);
    // Tool messages follow exactly the calls of the assistant message before them.
    let mut expected_results: Vec<String> = Vec::new();
    let mut all_text = String::new();
    let mut images = 0;
    for (i, message) in chat.messages.iter().enumerate() {
        match message {
            ChatMessage::Tool {
                tool_call_id,
                content,
            } => {
                prop_assert!(
                    !expected_results.is_empty(),
                    "tool message {i} answers no call"
                );
                prop_assert_eq!(&expected_results.remove(0), tool_call_id);
                all_text.push_str(content);
            }
            other => {
                prop_assert!(
                    expected_results.is_empty(),
                    "calls {:?} unanswered before message {}",
                    expected_results,
                    i
                );
                match other {
                    ChatMessage::System { content } => {
                        prop_assert_eq!(i, 0);
                        all_text.push_str(content);
                    }
                    ChatMessage::User {
                        content: UserContent::Text(t),
                    } => all_text.push_str(t),
                    ChatMessage::User {
                        content: UserContent::Parts(parts),
                    } => {
                        for p in parts {
                            match p {
                                ContentPart::Text { text } => all_text.push_str(text),
                                ContentPart::ImageUrl { .. } => images += 1,
                            }
                        }
                    }
                    ChatMessage::Assistant {
                        content,
                        tool_calls,
                    } => {
                        all_text.push_str(content.as_deref().unwrap_or_default());
                        for call in tool_calls.iter().flatten() {
                            let args: Value =
                                serde_json::from_str(&call.function.arguments).unwrap();
                            prop_assert!(args.is_object());
                            expected_results.push(call.id.clone().unwrap());
                        }
                    }
                    ChatMessage::Tool { .. } => unreachable!(),
                }
            }
        }
        all_text.push('\u{0}');
    }
    // No user data is dropped: every input text and image arrives.
    let (texts, input_images) = input_texts(req);
    for t in &texts {
        prop_assert!(all_text.contains(t.as_str()), "text {:?} was dropped", t);
    }
    prop_assert_eq!(images, input_images);
    if req.is_stream() {
        prop_assert_eq!(chat.stream_options.map(|o| o.include_usage), Some(true));
    } else {
        prop_assert!(chat.stream.is_none() && chat.stream_options.is_none());
    }
    let in_tools = req.tools.as_ref().map_or(0, Vec::len);
    prop_assert_eq!(chat.tools.as_ref().map_or(0, Vec::len), in_tools);
    for t in chat.tools.iter().flatten() {
        prop_assert_eq!(&t.function.parameters["type"], "object");
        prop_assert!(t.function.parameters.get("$schema").is_none());
    }
    prop_assert_eq!(
        chat.tool_choice.is_some(),
        in_tools > 0 && req.tool_choice.is_some()
    );
    Ok(())
}

// ---------- streams ----------

#[derive(Debug, Clone, Copy)]
enum Style {
    OpenAi,      // id on the first piece, index on all
    RepeatedId,  // id and index on every piece (LMStudio)
    NullId,      // id first, then "id": null (vLLM)
    ReusedIndex, // index 0 for every call, id on every piece (Ollama)
    NoIndex,     // id first, no index (old Ollama)
    Neither,     // no id, no index, one piece per call (mlx)
}

#[derive(Debug, Clone)]
enum Item {
    Text(String),
    Reasoning(String),
    Call {
        name: String,
        args: Value,
        cuts: Vec<usize>,
    },
}

fn item() -> impl Strategy<Value = Item> {
    prop_oneof![
        3 => "\\PC{1,12}".prop_map(Item::Text),
        1 => "\\PC{1,12}".prop_map(Item::Reasoning),
        2 => ("[A-Za-z]{1,8}", prop::collection::btree_map("[a-z]{1,4}", "\\PC{0,8}", 1..3), prop::collection::vec(any::<usize>(), 0..4))
            .prop_map(|(name, args, cuts)| Item::Call { name, args: json!(args), cuts }),
    ]
}

fn style() -> impl Strategy<Value = Style> {
    prop_oneof![
        Just(Style::OpenAi),
        Just(Style::RepeatedId),
        Just(Style::NullId),
        Just(Style::ReusedIndex),
        Just(Style::NoIndex),
        Just(Style::Neither),
    ]
}

/// Pieces of `s` cut at char boundaries near `cuts` (as fractions of the length).
fn split(s: &str, cuts: &[usize]) -> Vec<String> {
    let mut points: Vec<usize> = cuts
        .iter()
        .map(|c| c % (s.len() + 1))
        .filter(|&c| s.is_char_boundary(c) && c > 0 && c < s.len())
        .collect();
    points.sort_unstable();
    points.dedup();
    let mut out = Vec::new();
    let mut at = 0;
    for p in points.into_iter().chain([s.len()]) {
        out.push(s[at..p].to_owned());
        at = p;
    }
    out
}

fn delta(d: Value) -> Value {
    json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": d, "finish_reason": null}]})
}

/// The upstream body for `items` in `style`, and the blocks the client should rebuild.
fn upstream(items: &[Item], style: Style, usage: Option<bool>) -> (Vec<String>, Vec<Value>, bool) {
    let mut chunks = vec![delta(json!({"role": "assistant", "content": ""}))];
    let mut expected: Vec<Value> = Vec::new();
    let mut calls = 0;
    for item in items {
        match item {
            Item::Text(t) => {
                chunks.push(delta(json!({"content": t})));
                match expected.last_mut() {
                    Some(b) if b["type"] == "text" => {
                        b["text"] = format!("{}{t}", b["text"].as_str().unwrap()).into()
                    }
                    _ => expected.push(json!({"type": "text", "text": t})),
                }
            }
            Item::Reasoning(t) => {
                chunks.push(delta(json!({"reasoning_content": t})));
                match expected.last_mut() {
                    Some(b) if b["type"] == "thinking" => {
                        b["thinking"] = format!("{}{t}", b["thinking"].as_str().unwrap()).into()
                    }
                    _ => expected.push(json!({"type": "thinking", "thinking": t, "signature": ""})),
                }
            }
            Item::Call { name, args, cuts } => {
                let text = args.to_string();
                let pieces = match style {
                    Style::Neither => vec![text.clone()],
                    _ => split(&text, cuts),
                };
                let id = format!("call_{calls}");
                for (p, piece) in pieces.iter().enumerate() {
                    let mut call = json!({"type": "function", "function": {"arguments": piece}});
                    let first = p == 0;
                    if first {
                        call["function"]["name"] = json!(name);
                    }
                    match style {
                        Style::OpenAi => {
                            call["index"] = json!(calls);
                            if first {
                                call["id"] = json!(id);
                            }
                        }
                        Style::RepeatedId => {
                            call["index"] = json!(calls);
                            call["id"] = json!(id);
                        }
                        Style::NullId => {
                            call["index"] = json!(calls);
                            call["id"] = if first { json!(id) } else { Value::Null };
                        }
                        Style::ReusedIndex => {
                            call["index"] = json!(0);
                            call["id"] = json!(id);
                        }
                        Style::NoIndex => {
                            if first {
                                call["id"] = json!(id);
                            }
                        }
                        Style::Neither => {}
                    }
                    chunks.push(delta(json!({"tool_calls": [call]})));
                }
                let expected_id = match style {
                    Style::Neither => format!("toolu_test01_{calls}"),
                    _ => id,
                };
                expected.push(
                    json!({"type": "tool_use", "id": expected_id, "name": name, "input": args}),
                );
                calls += 1;
            }
        }
    }
    let reason = if calls > 0 { "tool_calls" } else { "stop" };
    chunks.push(json!({"id": "chatcmpl-1", "choices": [{"index": 0, "delta": {}, "finish_reason": reason}]}));
    match usage {
        None => {}
        Some(null_choices) => chunks.push(json!({
            "id": "chatcmpl-1",
            "choices": if null_choices { Value::Null } else { json!([]) },
            "usage": {"prompt_tokens": 10, "completion_tokens": 5}
        })),
    }
    let mut events: Vec<String> = chunks.iter().map(|c| format!("data: {c}\n\n")).collect();
    events.push("data: [DONE]\n\n".into());
    (events, expected, calls > 0)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_requests_translate_to_valid_chat_requests(req in request(), effort in any::<bool>()) {
        let target = RouteTarget::new("local-model")
            .with_reasoning(if effort { Reasoning::Effort } else { Reasoning::None });
        let chat = translate_request(&req, &target).map_err(|e| TestCaseError::fail(e.to_string()))?;
        check_chat(&req, &chat)?;
    }

    #[test]
    fn random_chunk_streams_obey_the_grammar_and_keep_the_content(
        items in prop::collection::vec(item(), 0..8),
        style in style(),
        usage in prop::option::of(any::<bool>()),
        splits in prop::collection::vec(any::<usize>(), 0..12),
        cut in prop::option::of((any::<usize>(), 0usize..3)),
    ) {
        let (chunks, expected, called) = upstream(&items, style, usage);
        let (body, cause) = match cut {
            // Cut before `[DONE]`, after any number of whole events.
            Some((at, cause)) => {
                let keep = at % chunks.len();
                let cause = match cause {
                    0 => FinishCause::Cut,
                    1 => FinishCause::Timeout,
                    _ => FinishCause::UpstreamError("upstream reset".into()),
                };
                (chunks[..keep].concat(), Some(cause))
            }
            None => (chunks.concat(), None),
        };
        let bytes = body.as_bytes();
        let splits: Vec<usize> = splits.iter().map(|s| s % (bytes.len() + 1)).collect();
        let (translator, out) = translate_sse(bytes, &splits, cause.clone().unwrap_or(FinishCause::Cut));
        let evs = events(&out);
        let summary = validate(&evs).map_err(TestCaseError::fail)?;
        prop_assert!(translator.is_finished());
        match cause {
            Some(_) => prop_assert_eq!(summary.errors, 1),
            None => {
                prop_assert_eq!(summary.errors, 0);
                let message = accumulate(&evs);
                prop_assert_eq!(&message["content"], &Value::Array(expected));
                prop_assert_eq!(&message["stop_reason"], if called { "tool_use" } else { "end_turn" });
                prop_assert_eq!(translator.usage().estimated, usage.is_none());
                if usage.is_some() {
                    prop_assert_eq!(&message["usage"]["output_tokens"], 5);
                }
            }
        }
    }
}
