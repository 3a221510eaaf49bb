//! One Claude Code transcript line -> a usage record, or the kind of line it is instead.
//!
//! Lines are parsed into small borrowed structs that take only the fields the ledger needs,
//! in one pass over the line (the message, whose content is most of a line's bytes, is read
//! in place, never buffered and parsed again); `message.usage` is kept as a [`RawValue`] so
//! its text is stored exactly as read.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use crate::dedup;
use crate::record::{source, Usage, UsageRecord};

/// What a file's lines have in common.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileContext {
    /// The file as the importer names it.
    pub file: String,
    /// The project directory's name.
    pub project: String,
    /// The session id when a line lacks one (the file's stem).
    pub session: String,
    /// The `--machine` label.
    pub machine: String,
}

/// Why a complete line gave no record. Every kind is counted in the import summary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Skip {
    /// An empty (or whitespace-only) line.
    Blank,
    /// Not JSON, or JSON of an unexpected shape.
    Malformed,
    /// A line without `message.usage` (user turns, summaries, tool results…).
    NoUsage,
    /// `message.model` is `<synthetic>`: written by Claude Code itself, not a model response.
    Synthetic,
    /// `isApiErrorMessage: true`: an API error shown as a message, not a billed response.
    ApiError,
    /// Usage but no `message.id`: nothing to de-duplicate it by.
    NoId,
    /// A usage field that is not a non-negative integer below 2^63.
    BadUsage,
    /// A missing or unparsable `timestamp`.
    BadTimestamp,
}

impl Skip {
    /// Every kind, in report order.
    pub const ALL: [Skip; 8] = [
        Skip::Blank,
        Skip::Malformed,
        Skip::NoUsage,
        Skip::Synthetic,
        Skip::ApiError,
        Skip::NoId,
        Skip::BadUsage,
        Skip::BadTimestamp,
    ];

    /// The kind's name in summaries.
    pub fn name(self) -> &'static str {
        match self {
            Skip::Blank => "blank",
            Skip::Malformed => "malformed_json",
            Skip::NoUsage => "no_usage",
            Skip::Synthetic => "synthetic",
            Skip::ApiError => "api_error",
            Skip::NoId => "no_message_id",
            Skip::BadUsage => "bad_usage",
            Skip::BadTimestamp => "bad_timestamp",
        }
    }
}

/// The result of parsing one line.
#[derive(Debug, PartialEq, Eq)]
pub struct Parsed {
    /// The record, or why there is none.
    pub outcome: Result<UsageRecord, Skip>,
    /// The line was not valid UTF-8 (parsed after replacing invalid bytes with U+FFFD).
    pub invalid_utf8: bool,
}

#[derive(Deserialize)]
struct Line<'a> {
    #[serde(borrow, default, rename = "sessionId")]
    session_id: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "requestId")]
    request_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    timestamp: Option<Cow<'a, str>>,
    #[serde(default, rename = "isApiErrorMessage")]
    api_error: Option<bool>,
    #[serde(borrow, default)]
    message: MaybeMessage<'a>,
}

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow, default)]
    id: LenientStr<'a>,
    #[serde(borrow, default)]
    model: LenientStr<'a>,
    #[serde(borrow, default)]
    usage: Option<&'a RawValue>,
}

/// `message` when it is an object; `None` for any other JSON value (old summaries write a
/// string there): no usage, but the line is well-formed.
#[derive(Default)]
struct MaybeMessage<'a>(Option<Message<'a>>);

/// A string field, or `None` when the field holds another JSON value (read past, not an
/// error: such a line has no usable id or model, which the caller counts).
#[derive(Default)]
struct LenientStr<'a>(Option<Cow<'a, str>>);

/// Reads any JSON value: `on_map` for an object, `None` for everything else (consumed).
struct OrNone<T>(PhantomData<T>);

macro_rules! none_for_scalars {
    ($($visit:ident: $t:ty),*) => {
        $(fn $visit<E: de::Error>(self, _: $t) -> Result<Self::Value, E> {
            Ok(Default::default())
        })*
    };
}

impl<'de: 'a, 'a> Visitor<'de> for OrNone<MaybeMessage<'a>> {
    type Value = MaybeMessage<'a>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        Message::deserialize(de::value::MapAccessDeserializer::new(map))
            .map(|m| MaybeMessage(Some(m)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(MaybeMessage(None))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(MaybeMessage(None))
    }
    none_for_scalars!(visit_str: &str, visit_bool: bool, visit_i64: i64, visit_u64: u64,
        visit_f64: f64);
}

impl<'de: 'a, 'a> Visitor<'de> for OrNone<LenientStr<'a>> {
    type Value = LenientStr<'a>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(LenientStr(Some(Cow::Borrowed(v))))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(LenientStr(Some(Cow::Owned(v.to_owned()))))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(LenientStr(None))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(LenientStr(None))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(LenientStr(None))
    }
    none_for_scalars!(visit_bool: bool, visit_i64: i64, visit_u64: u64, visit_f64: f64);
}

impl<'de: 'a, 'a> Deserialize<'de> for MaybeMessage<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(OrNone::<Self>(PhantomData))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for LenientStr<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(OrNone::<Self>(PhantomData))
    }
}

#[derive(Deserialize)]
struct UsageJson {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    cache_creation: Option<CacheCreation>,
    #[serde(default)]
    server_tool_use: Option<ServerToolUse>,
}

#[derive(Deserialize)]
struct CacheCreation {
    #[serde(default)]
    ephemeral_5m_input_tokens: Option<u64>,
    #[serde(default)]
    ephemeral_1h_input_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct ServerToolUse {
    #[serde(default)]
    web_search_requests: Option<u64>,
    #[serde(default)]
    web_fetch_requests: Option<u64>,
}

/// The model name Claude Code gives the messages it writes itself.
pub const SYNTHETIC_MODEL: &str = "<synthetic>";

/// Parses one line (without its line ending; a leading BOM and a trailing `\r` are the
/// reader's to strip) found at `offset` of the file `ctx` describes.
pub fn parse_line(line: &[u8], offset: u64, ctx: &FileContext) -> Parsed {
    match std::str::from_utf8(line) {
        Ok(text) => Parsed {
            outcome: parse_text(text, offset, ctx),
            invalid_utf8: false,
        },
        Err(_) => Parsed {
            outcome: parse_text(&String::from_utf8_lossy(line), offset, ctx),
            invalid_utf8: true,
        },
    }
}

fn parse_text(text: &str, offset: u64, ctx: &FileContext) -> Result<UsageRecord, Skip> {
    if text.trim().is_empty() {
        return Err(Skip::Blank);
    }
    let line: Line<'_> = serde_json::from_str(text).map_err(|_| Skip::Malformed)?;
    // No `message`, or not an object (old summaries write a string): no usage there.
    let Some(message) = line.message.0 else {
        return Err(Skip::NoUsage);
    };
    let Some(raw_usage) = message.usage else {
        return Err(Skip::NoUsage);
    };
    if raw_usage.get() == "null" {
        return Err(Skip::NoUsage);
    }
    let model = message.model.0.as_deref().unwrap_or("");
    if model == SYNTHETIC_MODEL {
        return Err(Skip::Synthetic);
    }
    if line.api_error == Some(true) {
        return Err(Skip::ApiError);
    }
    let usage = usage(raw_usage.get()).ok_or(Skip::BadUsage)?;
    let key = dedup::key(message.id.0.as_deref(), line.request_id.as_deref()).ok_or(Skip::NoId)?;
    let timestamp = line
        .timestamp
        .as_deref()
        .and_then(parse_timestamp)
        .ok_or(Skip::BadTimestamp)?;
    Ok(UsageRecord {
        key,
        source: source::CLAUDE_CODE.to_owned(),
        machine: ctx.machine.clone(),
        session_id: line
            .session_id
            .map_or_else(|| ctx.session.clone(), Cow::into_owned),
        project: ctx.project.clone(),
        model: model.to_owned(),
        timestamp,
        usage,
        raw_usage: raw_usage.get().to_owned(),
        file: ctx.file.clone(),
        offset,
        estimated: false,
        budget: None,
    })
}

/// The integer fields of a `usage` object; `None` when one is not a non-negative integer
/// that fits in an `i64` (the databases' integer).
pub fn usage(raw: &str) -> Option<Usage> {
    let u: UsageJson = serde_json::from_str(raw).ok()?;
    let creation = u.cache_creation_input_tokens.unwrap_or(0);
    let (w5, w1) = match &u.cache_creation {
        Some(c) => (
            c.ephemeral_5m_input_tokens.unwrap_or(0),
            c.ephemeral_1h_input_tokens.unwrap_or(0),
        ),
        None => (creation, 0),
    };
    // A split that does not add up to the total: the remainder counts as 5-minute writes,
    // so no token of the total is lost.
    let w5 = w5.max(creation.saturating_sub(w1));
    let usage = Usage {
        input: u.input_tokens.unwrap_or(0),
        output: u.output_tokens.unwrap_or(0),
        cache_write_5m: w5,
        cache_write_1h: w1,
        cache_read: u.cache_read_input_tokens.unwrap_or(0),
        web_search_requests: u
            .server_tool_use
            .as_ref()
            .and_then(|s| s.web_search_requests)
            .unwrap_or(0),
        web_fetch_requests: u
            .server_tool_use
            .as_ref()
            .and_then(|s| s.web_fetch_requests)
            .unwrap_or(0),
    };
    let fits = |v: u64| i64::try_from(v).is_ok();
    [
        usage.input,
        usage.output,
        usage.cache_write_5m,
        usage.cache_write_1h,
        usage.cache_read,
        usage.web_search_requests,
        usage.web_fetch_requests,
    ]
    .into_iter()
    .all(fits)
    .then_some(usage)
}

/// An RFC 3339 timestamp as microseconds since the epoch.
pub fn parse_timestamp(text: &str) -> Option<i64> {
    let t = chrono::DateTime::parse_from_rfc3339(text).ok()?;
    Some(t.timestamp_micros())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> FileContext {
        FileContext {
            file: "/p/s.jsonl".into(),
            project: "p".into(),
            session: "stem".into(),
            machine: "m".into(),
        }
    }

    const USAGE: &str = r#"{"input_tokens":4,"cache_creation_input_tokens":30,"cache_read_input_tokens":500,"cache_creation":{"ephemeral_5m_input_tokens":10,"ephemeral_1h_input_tokens":20},"output_tokens":7,"server_tool_use":{"web_search_requests":2},"service_tier":"standard","future_field":{"a":[1,2]}}"#;

    #[test]
    fn a_response_line_becomes_a_record_with_its_raw_usage_as_read() {
        let line = format!(
            r#"{{"sessionId":"sess","message":{{"id":"msg_1","model":"claude-opus-4-1","content":[{{"type":"text","text":"hi"}}],"usage":{USAGE}}},"requestId":"req_1","type":"assistant","timestamp":"2026-11-01T10:00:00.250Z"}}"#
        );
        let parsed = parse_line(line.as_bytes(), 42, &ctx());
        let r = parsed.outcome.unwrap();
        assert_eq!(r.key, "msg_1:req_1");
        assert_eq!(r.session_id, "sess");
        assert_eq!(r.model, "claude-opus-4-1");
        assert_eq!(r.raw_usage, USAGE);
        assert_eq!(r.offset, 42);
        assert_eq!(r.timestamp, 1_793_527_200_250_000);
        assert_eq!(
            r.usage,
            Usage {
                input: 4,
                output: 7,
                cache_write_5m: 10,
                cache_write_1h: 20,
                cache_read: 500,
                web_search_requests: 2,
                web_fetch_requests: 0
            }
        );
    }

    #[test]
    fn without_a_split_cache_writes_are_five_minute_writes() {
        let u = usage(r#"{"input_tokens":1,"cache_creation_input_tokens":9}"#).unwrap();
        assert_eq!((u.cache_write_5m, u.cache_write_1h), (9, 0));
    }

    #[test]
    fn every_kind_of_line_without_a_record() {
        let ts = r#""timestamp":"2026-11-01T10:00:00Z""#;
        let cases: Vec<(String, Skip)> = vec![
            ("  ".into(), Skip::Blank),
            ("{not json".into(), Skip::Malformed),
            ("[1,2]".into(), Skip::Malformed),
            (
                format!(r#"{{"type":"user","message":{{"role":"user","content":"x"}},{ts}}}"#),
                Skip::NoUsage,
            ),
            (
                format!(r#"{{"type":"summary","message":"text",{ts}}}"#),
                Skip::NoUsage,
            ),
            (
                format!(r#"{{"message":[{{"usage":{{"input_tokens":1}}}}],{ts}}}"#),
                Skip::NoUsage,
            ),
            (format!(r#"{{"message":null,{ts}}}"#), Skip::NoUsage),
            (
                format!(r#"{{"message":{{"id":7,"usage":{{"input_tokens":1}}}},{ts}}}"#),
                Skip::NoId,
            ),
            (
                format!(
                    r#"{{"message":{{"id":"m","model":"x","usage":{{"input_tokens":1}}}},{ts}"#
                ),
                Skip::Malformed,
            ),
            (
                format!(r#"{{"message":{{"id":"m","usage":null}},{ts}}}"#),
                Skip::NoUsage,
            ),
            (
                format!(
                    r#"{{"message":{{"id":"m","model":"<synthetic>","usage":{{"input_tokens":0}}}},{ts}}}"#
                ),
                Skip::Synthetic,
            ),
            (
                format!(
                    r#"{{"isApiErrorMessage":true,"message":{{"id":"m","model":"x","usage":{{"input_tokens":0}}}},{ts}}}"#
                ),
                Skip::ApiError,
            ),
            (
                format!(r#"{{"message":{{"model":"x","usage":{{"input_tokens":1}}}},{ts}}}"#),
                Skip::NoId,
            ),
            (
                format!(r#"{{"message":{{"id":"m","usage":{{"input_tokens":-1}}}},{ts}}}"#),
                Skip::BadUsage,
            ),
            (
                format!(
                    r#"{{"message":{{"id":"m","usage":{{"output_tokens":9223372036854775808}}}},{ts}}}"#
                ),
                Skip::BadUsage,
            ),
            (
                r#"{"message":{"id":"m","usage":{"input_tokens":1}},"timestamp":"yesterday"}"#
                    .into(),
                Skip::BadTimestamp,
            ),
            (
                r#"{"message":{"id":"m","usage":{"input_tokens":1}}}"#.into(),
                Skip::BadTimestamp,
            ),
        ];
        for (line, kind) in cases {
            assert_eq!(
                parse_line(line.as_bytes(), 0, &ctx()).outcome,
                Err(kind),
                "{line}"
            );
        }
    }

    #[test]
    fn invalid_utf8_is_flagged_and_the_usage_still_counts() {
        let mut line = br#"{"message":{"id":"m","content":"bad "#.to_vec();
        line.extend_from_slice(b"\xFF\xFE");
        line.extend_from_slice(
            br#"","usage":{"output_tokens":3}},"timestamp":"2026-11-01T10:00:00Z"}"#,
        );
        let parsed = parse_line(&line, 0, &ctx());
        assert!(parsed.invalid_utf8);
        let r = parsed.outcome.unwrap();
        assert_eq!(
            (r.key.as_str(), r.usage.output, r.session_id.as_str()),
            ("m", 3, "stem")
        );
    }
}
