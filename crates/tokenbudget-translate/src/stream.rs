//! OpenAI chunk stream -> Anthropic SSE events, as a state machine.

use tokenbudget_counter::Estimator;

use crate::anthropic::StopReason;
use crate::json_progress::JsonProgress;
use crate::openai::{ChatChunk, ChatUsage, ToolCallDelta};
use crate::sse::{
    BlockDelta, BlockStart, DeltaUsage, EmptyObject, ErrorBody, Event, MessageDeltaBody,
    StartMessage,
};
use crate::usage::Usage;

/// How an upstream stream ended, as the gateway saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinishCause {
    /// `data: [DONE]` or a clean end of the body.
    Done,
    /// The upstream reported an error mid-stream (its message).
    UpstreamError(String),
    /// The connection broke, or the body ended without a finish.
    Cut,
    /// A gateway timeout (first byte, idle or total) fired.
    Timeout,
}

/// What one SSE `data:` field meant, from [`StreamTranslator::push_data`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstream {
    /// A chunk was translated; keep reading.
    Continue,
    /// `[DONE]`: call [`StreamTranslator::finish`] with [`FinishCause::Done`].
    Done,
    /// An error chunk, a malformed chunk, or a stream this translator cannot follow:
    /// call `finish` with [`FinishCause::UpstreamError`] and this message.
    Error(String),
}

/// What the translator needs before the upstream's first byte.
#[derive(Debug, Clone)]
pub struct StreamStart {
    /// The Anthropic message id to report (`msg_…`; the gateway makes it).
    pub message_id: String,
    /// The model name to report (the one the client asked for).
    pub model: String,
    /// The prompt's tokens as counted before forwarding: reported in `message_start`, and
    /// the input usage when the upstream reports none.
    pub input_tokens: u64,
    /// Estimates output tokens when the upstream reports no usage.
    pub estimator: Estimator,
}

/// Translates a Chat Completions chunk stream into Anthropic's event stream.
///
/// Feed it in order: [`start`](Self::start) at once, [`keepalive`](Self::keepalive) while
/// waiting, [`push`](Self::push) (or [`push_data`](Self::push_data)) per upstream chunk,
/// [`finish`](Self::finish) once. Each call appends complete SSE events to the caller's
/// buffer and returns; nothing is held back for a later chunk (only the arguments of a tool
/// call whose name has not arrived yet, from servers that send them in that order).
///
/// # Behavior
/// - The output is always a well-formed Anthropic stream: `message_start` first (sent by
///   whichever call comes first), every `content_block_start` closed by its
///   `content_block_stop` before the next one starts, block indices 0, 1, 2…, then one
///   `message_delta` and **exactly one `message_stop`**, whatever the calls' order: calls
///   after `finish` write nothing.
/// - Text deltas become a `text` block, `reasoning_content`/`reasoning` deltas a `thinking`
///   block (no signature), each tool call one `tool_use` block with `input_json_delta`
///   pieces. A change of kind closes the open block and opens the next.
/// - Tool call pieces are matched to calls by `id` when it is present (so a repeated `id`
///   continues its call, and a new `id` under a reused `index`, as Ollama sends, starts a new
///   one), else by `index`, else they continue the latest call; a piece naming a function
///   when the matched call already has its name and complete arguments starts a new call
///   (servers that send neither `id` nor `index`, one call per chunk). Missing ids are made
///   up (`toolu_…`); ids are cleaned to Anthropic's `[A-Za-z0-9_-]`.
/// - `choices: null` or `[]` chunks only carry usage; choices other than 0 are ignored.
/// - `finish(Done)` maps `finish_reason`: `stop` -> `end_turn` (`tool_use` when tool calls
///   were streamed: Ollama says `stop` after calls), `length` -> `max_tokens`, `tool_calls`
///   -> `tool_use`, `content_filter` -> `refusal`, none -> as `stop`.
/// - A truncated tool call is never an `end_turn`: `finish(Done)` with a call whose
///   arguments are unclosed JSON (and no `length` finish) or that never got a name ends as
///   an error. Errors (`UpstreamError`, `Cut`, `Timeout`, or such a stream) write an `error`
///   event, close the open block, then `message_delta` with `stop_reason: null` and the
///   usage so far, then `message_stop`.
/// - [`usage`](Self::usage): the upstream's last usage (vLLM repeats it on every chunk; the
///   last one wins), else the start's input tokens and the estimated output of everything
///   streamed, flagged estimated.
#[derive(Debug, Clone)]
pub struct StreamTranslator {
    start: StreamStart,
    phase: Phase,
    next_index: u32,
    open: Open,
    calls: Vec<Call>,
    finish_reason: Option<String>,
    reported: Option<ChatUsage>,
    estimated_output: u64,
    failure: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    New,
    Started,
    Finished,
}

/// The block being written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Nothing,
    Text(u32),
    Thinking(u32),
    /// A tool call's block: (block index, call slot).
    Tool(u32, usize),
}

#[derive(Debug, Clone)]
struct Call {
    upstream_index: Option<u32>,
    upstream_id: Option<String>,
    id: String,
    name: Option<String>,
    /// Arguments that came before the name (the block cannot start without it).
    pending: String,
    /// The block's index once started.
    block: Option<u32>,
    json: JsonProgress,
}

impl StreamTranslator {
    /// A translator that has written nothing yet.
    pub fn new(start: StreamStart) -> Self {
        StreamTranslator {
            start,
            phase: Phase::New,
            next_index: 0,
            open: Open::Nothing,
            calls: Vec::new(),
            finish_reason: None,
            reported: None,
            estimated_output: 0,
            failure: None,
        }
    }

    /// Writes `message_start` (once; later calls write nothing). Send it before the upstream
    /// answers, so the client sees a live stream at once.
    pub fn start(&mut self, out: &mut Vec<u8>) {
        if self.phase != Phase::New {
            return;
        }
        self.phase = Phase::Started;
        Event::MessageStart {
            message: StartMessage {
                id: &self.start.message_id,
                kind: "message",
                role: "assistant",
                model: &self.start.model,
                content: [],
                stop_reason: None,
                stop_sequence: None,
                usage: DeltaUsage {
                    input_tokens: self.start.input_tokens,
                    output_tokens: 0,
                    cache_creation_input_tokens: 0,
                    cache_read_input_tokens: 0,
                },
            },
        }
        .write(out);
    }

    /// Writes a `ping` event (after `message_start`, which it writes first if needed), so a
    /// client waiting for a slow first token does not give up. Nothing after `finish`.
    pub fn keepalive(&mut self, out: &mut Vec<u8>) {
        if self.phase == Phase::Finished {
            return;
        }
        self.start(out);
        Event::Ping.write(out);
    }

    /// Parses one SSE `data:` field and translates it (see [`Upstream`]).
    pub fn push_data(&mut self, data: &str, out: &mut Vec<u8>) -> Upstream {
        let data = data.trim();
        if data == "[DONE]" {
            return Upstream::Done;
        }
        if data.is_empty() {
            return Upstream::Continue;
        }
        let chunk: ChatChunk = match serde_json::from_str(data) {
            Ok(chunk) => chunk,
            Err(e) => return Upstream::Error(format!("malformed upstream chunk: {e}")),
        };
        if let Some(error) = &chunk.error {
            return Upstream::Error(upstream_error_message(error));
        }
        self.push(&chunk, out);
        match &self.failure {
            Some(failure) => Upstream::Error(failure.clone()),
            None => Upstream::Continue,
        }
    }

    /// Translates one chunk.
    pub fn push(&mut self, chunk: &ChatChunk, out: &mut Vec<u8>) {
        if self.phase == Phase::Finished {
            return;
        }
        self.start(out);
        if let Some(usage) = chunk.usage {
            self.reported = Some(usage);
        }
        let Some(choice) = chunk.choices.iter().find(|c| c.index.unwrap_or(0) == 0) else {
            return;
        };
        if let Some(delta) = &choice.delta {
            if self.failure.is_none() {
                if let Some(text) = delta.reasoning_content.as_deref().filter(|t| !t.is_empty()) {
                    self.thinking(text, out);
                }
                if let Some(text) = delta.content.as_deref().filter(|t| !t.is_empty()) {
                    self.text(text, out);
                }
                for call in &delta.tool_calls {
                    self.tool_call(call, out);
                    if self.failure.is_some() {
                        break;
                    }
                }
            }
        }
        if let Some(reason) = choice.finish_reason.as_deref().filter(|r| !r.is_empty()) {
            self.finish_reason = Some(reason.to_owned());
        }
    }

    /// Ends the stream: an `error` event first unless it ended well, the open block's stop,
    /// `message_delta` with the stop reason and usage, and the one `message_stop`. Writes
    /// `message_start` first if nothing was written yet; writes nothing when called again.
    ///
    /// Returns true when the stream ended well (no `error` event: a stop reason was sent),
    /// false when it ended with an error or had already finished.
    pub fn finish(&mut self, cause: FinishCause, out: &mut Vec<u8>) -> bool {
        if self.phase == Phase::Finished {
            return false;
        }
        self.start(out);
        let timed_out = cause == FinishCause::Timeout;
        let error = match cause {
            FinishCause::Done => self.failure.clone().or_else(|| self.truncated_call()),
            FinishCause::UpstreamError(message) => Some(message),
            FinishCause::Cut => {
                Some("the upstream stream ended before the answer was complete".into())
            }
            FinishCause::Timeout => {
                Some("the upstream timed out before the answer was complete".into())
            }
        };
        if let Some(message) = &error {
            let kind = if timed_out {
                "timeout_error"
            } else {
                "api_error"
            };
            Event::Error {
                error: ErrorBody { kind, message },
            }
            .write(out);
        }
        self.close_open(out);
        let ended_well = error.is_none();
        let stop_reason = match error {
            Some(_) => None,
            None => Some(self.stop_reason()),
        };
        let usage = self.usage();
        Event::MessageDelta {
            delta: MessageDeltaBody {
                stop_reason,
                stop_sequence: None,
            },
            usage: DeltaUsage {
                input_tokens: usage.input_tokens,
                output_tokens: usage.output_tokens,
                cache_creation_input_tokens: 0,
                cache_read_input_tokens: usage.cache_read_input_tokens,
            },
        }
        .write(out);
        Event::MessageStop.write(out);
        self.phase = Phase::Finished;
        ended_well
    }

    /// Whether the upstream sent a `finish_reason` (a body that ends after one, without
    /// `[DONE]`, ended well; one that ends before it was cut).
    pub fn saw_finish_reason(&self) -> bool {
        self.finish_reason.is_some()
    }

    /// Whether `finish` has run.
    pub fn is_finished(&self) -> bool {
        self.phase == Phase::Finished
    }

    /// Why the translator stopped following the stream, if it did (then `finish` reports
    /// an error whatever the cause).
    pub fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }

    /// The upstream's usage as reported (the last usage seen), if any.
    pub fn reported_usage(&self) -> Option<Usage> {
        self.reported.map(Usage::from_chat)
    }

    /// The usage to settle: the upstream's when it reported any, else the start's input
    /// tokens and the estimated output so far, flagged [`Usage::estimated`].
    pub fn usage(&self) -> Usage {
        self.reported_usage().unwrap_or(Usage {
            input_tokens: self.start.input_tokens,
            output_tokens: self.estimated_output,
            cache_read_input_tokens: 0,
            estimated: true,
        })
    }

    fn thinking(&mut self, text: &str, out: &mut Vec<u8>) {
        let index = match self.open {
            Open::Thinking(index) => index,
            _ => {
                let index = self.open_block(
                    BlockStart::Thinking {
                        thinking: "",
                        signature: "",
                    },
                    out,
                );
                self.open = Open::Thinking(index);
                index
            }
        };
        self.count(text);
        Event::ContentBlockDelta {
            index,
            delta: BlockDelta::ThinkingDelta { thinking: text },
        }
        .write(out);
    }

    fn text(&mut self, text: &str, out: &mut Vec<u8>) {
        let index = match self.open {
            Open::Text(index) => index,
            _ => {
                let index = self.open_block(BlockStart::Text { text: "" }, out);
                self.open = Open::Text(index);
                index
            }
        };
        self.count(text);
        Event::ContentBlockDelta {
            index,
            delta: BlockDelta::TextDelta { text },
        }
        .write(out);
    }

    fn tool_call(&mut self, delta: &ToolCallDelta, out: &mut Vec<u8>) {
        let slot = self.select_call(delta);
        let name = delta
            .function
            .as_ref()
            .and_then(|f| f.name.as_deref())
            .filter(|n| !n.is_empty());
        let args = delta
            .function
            .as_ref()
            .and_then(|f| f.arguments.as_deref())
            .filter(|a| !a.is_empty());
        let Some(call) = self.calls.get_mut(slot) else {
            return;
        };
        if call.name.is_none() {
            if let Some(name) = name {
                call.name = Some(name.to_owned());
            }
        }
        if let Some(args) = args {
            call.json.feed(args);
        }
        let (block, started) = match (call.block, &call.name) {
            (Some(block), _) => (block, false),
            (None, Some(_)) => (self.start_tool_block(slot, out), true),
            (None, None) => {
                // No name yet: keep the arguments until it comes.
                if let (Some(call), Some(args)) = (self.calls.get_mut(slot), args) {
                    call.pending.push_str(args);
                }
                return;
            }
        };
        if !started && self.open != Open::Tool(block, slot) {
            self.failure = Some(format!(
                "upstream interleaved the pieces of tool call {} with other content",
                self.calls.get(slot).map_or("", |c| c.id.as_str())
            ));
            return;
        }
        let pending = self
            .calls
            .get_mut(slot)
            .map(|c| std::mem::take(&mut c.pending))
            .unwrap_or_default();
        if !pending.is_empty() {
            self.input_json(block, &pending, out);
        }
        if let Some(args) = args {
            self.input_json(block, args, out);
        }
    }

    fn input_json(&mut self, index: u32, piece: &str, out: &mut Vec<u8>) {
        self.count(piece);
        Event::ContentBlockDelta {
            index,
            delta: BlockDelta::InputJsonDelta {
                partial_json: piece,
            },
        }
        .write(out);
    }

    /// The call slot a tool call piece belongs to (see the type's docs), created if new.
    fn select_call(&mut self, delta: &ToolCallDelta) -> usize {
        let id = delta.id.as_deref().filter(|id| !id.is_empty());
        let names = delta
            .function
            .as_ref()
            .and_then(|f| f.name.as_deref())
            .is_some_and(|n| !n.is_empty());
        // A name on a call that is already named and whose arguments are closed is the next
        // call of a server that sends neither ids nor indices.
        let starts_anew =
            |c: &Call| names && c.name.is_some() && c.json.is_complete() && c.json.has_content();
        if let Some(id) = id {
            if let Some(slot) = self
                .calls
                .iter()
                .rposition(|c| c.upstream_id.as_deref() == Some(id))
            {
                return slot;
            }
            // The call at this index was announced without an id: the id is its own.
            if let Some(slot) = delta.index.and_then(|index| {
                self.calls.iter().rposition(|c| {
                    c.upstream_index == Some(index) && c.upstream_id.is_none() && !starts_anew(c)
                })
            }) {
                let cleaned = clean_id(id);
                let unique = !self.calls.iter().any(|c| c.id == cleaned);
                if let Some(call) = self.calls.get_mut(slot) {
                    call.upstream_id = Some(id.to_owned());
                    // Not announced yet: the block can still carry the upstream's id.
                    if call.block.is_none() && unique && !cleaned.is_empty() {
                        call.id = cleaned;
                    }
                }
                return slot;
            }
            return self.new_call(delta.index, Some(id));
        }
        let matched = match delta.index {
            Some(index) => self
                .calls
                .iter()
                .rposition(|c| c.upstream_index == Some(index)),
            None => self.calls.len().checked_sub(1),
        };
        match matched {
            Some(slot) if !self.calls.get(slot).is_some_and(starts_anew) => slot,
            _ => self.new_call(delta.index, None),
        }
    }

    fn new_call(&mut self, upstream_index: Option<u32>, upstream_id: Option<&str>) -> usize {
        let mut id = match upstream_id {
            Some(id) => clean_id(id),
            None => String::new(),
        };
        if id.is_empty() || self.calls.iter().any(|c| c.id == id) {
            let base = self
                .start
                .message_id
                .strip_prefix("msg_")
                .unwrap_or(&self.start.message_id);
            id = format!("toolu_{}_{}", clean_id(base), self.calls.len());
        }
        self.calls.push(Call {
            upstream_index,
            upstream_id: upstream_id.map(str::to_owned),
            id,
            name: None,
            pending: String::new(),
            block: None,
            json: JsonProgress::default(),
        });
        self.calls.len() - 1
    }

    fn start_tool_block(&mut self, slot: usize, out: &mut Vec<u8>) -> u32 {
        self.close_open(out);
        let index = self.next_index;
        self.next_index += 1;
        let Some(call) = self.calls.get_mut(slot) else {
            return index;
        };
        call.block = Some(index);
        let name = call.name.as_deref().unwrap_or_default();
        self.estimated_output += self.start.estimator.estimate(name);
        Event::ContentBlockStart {
            index,
            content_block: BlockStart::ToolUse {
                id: &call.id,
                name,
                input: EmptyObject {},
            },
        }
        .write(out);
        self.open = Open::Tool(index, slot);
        index
    }

    fn open_block(&mut self, block: BlockStart<'_>, out: &mut Vec<u8>) -> u32 {
        self.close_open(out);
        let index = self.next_index;
        self.next_index += 1;
        Event::ContentBlockStart {
            index,
            content_block: block,
        }
        .write(out);
        index
    }

    fn close_open(&mut self, out: &mut Vec<u8>) {
        let index = match self.open {
            Open::Nothing => return,
            Open::Text(index) | Open::Thinking(index) | Open::Tool(index, _) => index,
        };
        Event::ContentBlockStop { index }.write(out);
        self.open = Open::Nothing;
    }

    fn count(&mut self, text: &str) {
        // Summed per piece: servers stream about one token per delta, and no text is kept.
        self.estimated_output += self.start.estimator.estimate(text);
    }

    /// An error message when a tool call cannot have ended well.
    fn truncated_call(&self) -> Option<String> {
        if self.finish_reason.as_deref() == Some("length") {
            return None;
        }
        let call = self
            .calls
            .iter()
            .find(|c| c.name.is_none() || !c.json.is_complete())?;
        Some(match &call.name {
            None => format!(
                "the upstream sent tool call {} without a function name",
                call.id
            ),
            Some(name) => format!(
                "the upstream ended inside tool call {} ({name}): its arguments are incomplete",
                call.id
            ),
        })
    }

    fn stop_reason(&self) -> StopReason {
        let called = self.calls.iter().any(|c| c.block.is_some());
        match self.finish_reason.as_deref() {
            Some("length") => StopReason::MaxTokens,
            Some("content_filter") => StopReason::Refusal,
            _ if called => StopReason::ToolUse,
            _ => StopReason::EndTurn,
        }
    }
}

/// Keeps `[A-Za-z0-9_-]`, replaces anything else with `_`.
pub(crate) fn clean_id(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The message of an upstream error object (`{"message": …}` or the JSON itself).
pub(crate) fn upstream_error_message(error: &serde_json::Value) -> String {
    match error.get("message").and_then(|m| m.as_str()) {
        Some(message) => format!("upstream error: {message}"),
        None => format!("upstream error: {error}"),
    }
}
