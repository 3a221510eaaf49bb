//! A generator of Claude Code-shaped transcript trees with every trap the importer must
//! survive, and the exact totals a correct import must find.
//!
//! The tree is `root/<project>/<session>.jsonl` plus `root/<project>/<session>/subagents/
//! agent-1.jsonl`. The expected totals are computed from what the generator meant to write
//! (each response's final usage, each key once), never by parsing the files back.
//!
//! Traps, when [`Spec::traps`] is on:
//! - every response written as 1-3 lines (streaming snapshots, thinking/text/tool_use parts)
//!   whose usage grows to the final one, written last;
//! - a user line before each response (no usage);
//! - per session: a malformed JSON line, a blank line, a `<synthetic>` line, an API error
//!   line, a usage line without `message.id`;
//! - one response per session without `requestId` (keyed by message id alone);
//! - one response per session (the fourth) logged once more without its `requestId`, its
//!   final line repeated as an older Claude Code writes it (dedup rule 6): the bare copy is
//!   stored but shadowed, so the response counts once, with the request id's record;
//! - one response per session whose final line has an invalid UTF-8 byte in its text;
//! - each session's first response reuses the previous session's first message id with its
//!   own request id (two responses);
//! - a subagent file replaying the parent's first three responses line for line (count
//!   once, the parent's file keeps them), plus two responses of its own;
//! - session 0 of each project written with CRLF endings, session 1 with a UTF-8 BOM;
//! - the last session of each project ends in a torn line (a response cut in half, no
//!   newline): not counted, left for a later run.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::record::Usage;
use crate::verify::Totals;

/// The shape of a tree.
#[derive(Clone, Debug)]
pub struct Spec {
    /// Project directories.
    pub projects: usize,
    /// Sessions per project.
    pub sessions: usize,
    /// Responses per session file.
    pub responses: usize,
    /// Bytes of text content per assistant line (scales the tree's size).
    pub padding: usize,
    /// Write the traps (see the module docs).
    pub traps: bool,
    /// Varies the usage numbers.
    pub seed: u64,
}

impl Default for Spec {
    fn default() -> Self {
        Self {
            projects: 2,
            sessions: 3,
            responses: 6,
            padding: 40,
            traps: true,
            seed: 1,
        }
    }
}

/// What a correct import of the tree finds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expected {
    /// Every file written.
    pub files: Vec<PathBuf>,
    /// Bytes written.
    pub bytes: u64,
    /// Distinct responses and their final usage, summed.
    pub total: Totals,
    /// The same per file (the file whose line wins each key), by path.
    pub per_file: BTreeMap<String, Totals>,
    /// Complete lines without a record, by kind name ([`crate::parse::Skip::name`]).
    pub skipped: BTreeMap<&'static str, u64>,
    /// Lines with a usage record (snapshots and replays included).
    pub usage_lines: u64,
    /// Complete lines.
    pub lines: u64,
    /// Lines ending in CRLF.
    pub crlf_lines: u64,
    /// Files starting with a BOM.
    pub bom_files: u64,
    /// Lines with invalid UTF-8.
    pub invalid_utf8_lines: u64,
    /// Files ending in a torn line.
    pub torn_files: u64,
    /// Bare copies of responses also logged with their request id (rule 6): each is a
    /// record the ledger stores (an insert) but never counts.
    pub shadowed: u64,
}

const MODELS: [&str; 3] = [
    "claude-sonnet-4-5-20250929",
    "claude-opus-4-1-20250805",
    "claude-haiku-4-5-20251001",
];

/// 2026-11-01T00:00:00Z in seconds.
const BASE: i64 = 1_793_491_200;

fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// One response as the generator means it.
#[derive(Clone)]
struct Response {
    message_id: String,
    request_id: Option<String>,
    model: &'static str,
    /// Seconds since the epoch of its first line.
    time: i64,
    usage: Usage,
    parts: u64,
    bad_utf8: bool,
}

fn timestamp(secs: i64, millis: i64) -> String {
    let t = chrono::DateTime::from_timestamp(secs, 0).unwrap_or_default()
        + chrono::Duration::milliseconds(millis);
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

struct Writer {
    out: BufWriter<File>,
    eol: &'static [u8],
    bytes: u64,
    lines: u64,
}

impl Writer {
    fn create(path: &Path, crlf: bool, bom: bool) -> io::Result<Self> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        let mut w = Self {
            out: BufWriter::with_capacity(1 << 20, File::create(path)?),
            eol: if crlf { b"\r\n" } else { b"\n" },
            bytes: 0,
            lines: 0,
        };
        if bom {
            w.raw(b"\xEF\xBB\xBF")?;
        }
        Ok(w)
    }

    fn raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.bytes += bytes.len() as u64;
        self.out.write_all(bytes)
    }

    fn line(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.raw(bytes)?;
        self.lines += 1;
        let eol = self.eol;
        self.raw(eol)
    }
}

fn usage_json(u: &Usage) -> String {
    format!(
        r#"{{"input_tokens":{},"cache_creation_input_tokens":{},"cache_read_input_tokens":{},"cache_creation":{{"ephemeral_5m_input_tokens":{},"ephemeral_1h_input_tokens":{}}},"output_tokens":{},"server_tool_use":{{"web_search_requests":{},"web_fetch_requests":{}}},"service_tier":"standard"}}"#,
        u.input,
        u.cache_write_5m + u.cache_write_1h,
        u.cache_read,
        u.cache_write_5m,
        u.cache_write_1h,
        u.output,
        u.web_search_requests,
        u.web_fetch_requests
    )
}

/// One assistant line: part `part` of `parts` (the last carries the final usage).
fn assistant_line(
    r: &Response,
    part: u64,
    session: &str,
    sidechain: bool,
    padding: &str,
) -> Vec<u8> {
    let mut usage = r.usage;
    if part + 1 < r.parts {
        // An earlier snapshot: the output so far.
        usage.output = r.usage.output * (part + 1) / (r.parts + 1);
    }
    let kind = ["thinking", "text", "tool_use"][(part % 3) as usize];
    let request = r
        .request_id
        .as_ref()
        .map(|id| format!(r#","requestId":"{id}""#))
        .unwrap_or_default();
    let head = format!(
        r#"{{"parentUuid":"u-{mid}-{p0}","isSidechain":{sidechain},"userType":"external","cwd":"/home/dev/project","sessionId":"{session}","version":"2.0.14","gitBranch":"main","message":{{"id":"{mid}","type":"message","role":"assistant","model":"{model}","content":[{{"type":"{kind}","text":""#,
        mid = r.message_id,
        p0 = part,
        model = r.model,
    );
    let tail = format!(
        r#""}}],"stop_reason":null,"stop_sequence":null,"usage":{usage}}}{request},"type":"assistant","uuid":"u-{mid}-{p1}","timestamp":"{ts}"}}"#,
        usage = usage_json(&usage),
        mid = r.message_id,
        p1 = part + 1,
        ts = timestamp(r.time, part as i64 * 250),
    );
    let mut line = head.into_bytes();
    line.extend_from_slice(padding.as_bytes());
    if r.bad_utf8 && part + 1 == r.parts {
        line.extend_from_slice(b"\xFF\xFE bad bytes");
    }
    line.extend_from_slice(tail.as_bytes());
    line
}

fn user_line(session: &str, time: i64, n: usize) -> Vec<u8> {
    format!(
        r#"{{"parentUuid":null,"isSidechain":false,"userType":"external","cwd":"/home/dev/project","sessionId":"{session}","version":"2.0.14","type":"user","message":{{"role":"user","content":"question {n}"}},"uuid":"user-{session}-{n}","timestamp":"{ts}"}}"#,
        ts = timestamp(time, 0)
    )
    .into_bytes()
}

/// Writes the tree `spec` describes under `root` and returns what a correct import finds.
pub fn generate(root: &Path, spec: &Spec) -> io::Result<Expected> {
    let mut expected = Expected::default();
    let padding = "x".repeat(spec.padding);
    let mut bump = |e: &mut Expected, kind: &'static str| *e.skipped.entry(kind).or_insert(0) += 1;
    for p in 0..spec.projects {
        let project = format!("-home-dev-project-{p}");
        for s in 0..spec.sessions {
            let session = format!("{:08x}-0000-4000-8000-{:012x}", p, s);
            let path = root.join(&project).join(format!("{session}.jsonl"));
            let name = path.display().to_string();
            let crlf = spec.traps && s == 0;
            let bom = spec.traps && s == 1;
            let mut w = Writer::create(&path, crlf, bom)?;
            let mut totals = Totals::default();
            let mut responses = Vec::new();
            for i in 0..spec.responses {
                let h = mix(spec.seed ^ mix((p as u64) << 40 | (s as u64) << 20 | i as u64));
                let reuse = spec.traps && i == 0 && s > 0;
                let message_id = if reuse {
                    format!("msg_{p}_{}_0", s - 1)
                } else {
                    format!("msg_{p}_{s}_{i}")
                };
                let no_request = spec.traps && i == 1;
                let r = Response {
                    message_id,
                    request_id: (!no_request).then(|| format!("req_{p}_{s}_{i}")),
                    model: MODELS[(h % 3) as usize],
                    time: BASE + ((p * 7919 + s * 601 + i * 37) as i64) * 60,
                    usage: Usage {
                        input: 1 + h % 50,
                        output: 10 + (h >> 8) % 3000,
                        cache_write_5m: (h >> 20) % 5000,
                        cache_write_1h: (h >> 32) % 2000,
                        cache_read: (h >> 40) % 90_000,
                        web_search_requests: (h >> 60) % 2,
                        web_fetch_requests: 0,
                    },
                    parts: 1 + h % 3,
                    bad_utf8: spec.traps && i == 2,
                };
                w.line(&user_line(&session, r.time - 5, i))?;
                bump(&mut expected, "no_usage");
                for part in 0..r.parts {
                    w.line(&assistant_line(&r, part, &session, false, &padding))?;
                    expected.usage_lines += 1;
                }
                if spec.traps && i == 3 {
                    // The same final line, without the request id: keyed by the message id
                    // alone, shadowed by the record with it.
                    let bare = Response {
                        request_id: None,
                        ..r.clone()
                    };
                    w.line(&assistant_line(
                        &bare,
                        r.parts - 1,
                        &session,
                        false,
                        &padding,
                    ))?;
                    expected.usage_lines += 1;
                    expected.shadowed += 1;
                }
                if r.bad_utf8 {
                    expected.invalid_utf8_lines += 1;
                }
                totals.records += 1;
                totals.usage.add(&r.usage);
                if spec.traps && i == spec.responses / 2 {
                    trap_lines(&mut w, &mut expected, &session, r.time, &mut bump)?;
                }
                responses.push(r);
            }
            let torn = spec.traps && s + 1 == spec.sessions;
            if torn {
                let r = Response {
                    message_id: format!("msg_{p}_{s}_torn"),
                    request_id: Some(format!("req_{p}_{s}_torn")),
                    model: MODELS[0],
                    time: BASE + 999_999,
                    usage: Usage {
                        output: 77,
                        ..Usage::default()
                    },
                    parts: 1,
                    bad_utf8: false,
                };
                let line = assistant_line(&r, 0, &session, false, &padding);
                w.raw(&line[..line.len() / 2])?;
                expected.torn_files += 1;
            }
            if crlf {
                expected.crlf_lines += w.lines;
            }
            expected.bom_files += u64::from(bom);
            expected.lines += w.lines;
            expected.bytes += w.bytes;
            w.out.flush()?;
            expected.files.push(path.clone());
            if spec.traps {
                let sub = root
                    .join(&project)
                    .join(&session)
                    .join("subagents/agent-1.jsonl");
                let mut sw = Writer::create(&sub, false, false)?;
                let mut own = Totals::default();
                for r in responses.iter().take(3) {
                    for part in 0..r.parts {
                        sw.line(&assistant_line(r, part, &session, true, &padding))?;
                        expected.usage_lines += 1;
                        if r.bad_utf8 && part + 1 == r.parts {
                            expected.invalid_utf8_lines += 1;
                        }
                    }
                }
                for i in 0..2u64 {
                    let r = Response {
                        message_id: format!("msg_{p}_{s}_agent_{i}"),
                        request_id: Some(format!("req_{p}_{s}_agent_{i}")),
                        model: MODELS[2],
                        time: BASE + 500 + i as i64,
                        usage: Usage {
                            input: 3 + i,
                            output: 40 + i,
                            cache_read: 1000,
                            ..Usage::default()
                        },
                        parts: 2,
                        bad_utf8: false,
                    };
                    for part in 0..r.parts {
                        sw.line(&assistant_line(&r, part, &session, true, &padding))?;
                        expected.usage_lines += 1;
                    }
                    own.records += 1;
                    own.usage.add(&r.usage);
                }
                sw.out.flush()?;
                expected.lines += sw.lines;
                expected.bytes += sw.bytes;
                expected.per_file.insert(sub.display().to_string(), own);
                expected.total.records += own.records;
                expected.total.usage.add(&own.usage);
                expected.files.push(sub);
            }
            expected.total.records += totals.records;
            expected.total.usage.add(&totals.usage);
            expected.per_file.insert(name, totals);
        }
    }
    expected.files.sort();
    for kind in crate::parse::Skip::ALL {
        expected.skipped.entry(kind.name()).or_insert(0);
    }
    Ok(expected)
}

/// The per-session traps that are lines of their own.
fn trap_lines(
    w: &mut Writer,
    e: &mut Expected,
    session: &str,
    time: i64,
    bump: &mut impl FnMut(&mut Expected, &'static str),
) -> io::Result<()> {
    let ts = timestamp(time + 1, 0);
    w.line(br#"{"type":"assistant","message":{"id":"msg_cut","usage":{"input_tok"#)?;
    bump(e, "malformed_json");
    w.line(b"   ")?;
    bump(e, "blank");
    w.line(format!(
        r#"{{"type":"assistant","sessionId":"{session}","message":{{"id":"msg_syn_{session}","model":"<synthetic>","role":"assistant","content":[{{"type":"text","text":"No response requested."}}],"usage":{{"input_tokens":0,"output_tokens":0,"cache_creation_input_tokens":0,"cache_read_input_tokens":0}}}},"requestId":"req_syn","timestamp":"{ts}"}}"#
    ).as_bytes())?;
    bump(e, "synthetic");
    w.line(format!(
        r#"{{"type":"assistant","sessionId":"{session}","isApiErrorMessage":true,"message":{{"id":"msg_err_{session}","model":"claude-sonnet-4-5-20250929","role":"assistant","content":[{{"type":"text","text":"API Error: 529 Overloaded"}}],"usage":{{"input_tokens":0,"output_tokens":0}}}},"timestamp":"{ts}"}}"#
    ).as_bytes())?;
    bump(e, "api_error");
    w.line(format!(
        r#"{{"type":"assistant","sessionId":"{session}","message":{{"model":"claude-sonnet-4-5-20250929","role":"assistant","usage":{{"input_tokens":5,"output_tokens":6}}}},"timestamp":"{ts}"}}"#
    ).as_bytes())?;
    bump(e, "no_message_id");
    w.line(
        format!(r#"{{"type":"summary","summary":"A chat","leafUuid":"x-{session}"}}"#).as_bytes(),
    )?;
    bump(e, "no_usage");
    Ok(())
}
