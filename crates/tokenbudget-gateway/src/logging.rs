//! Structured logs with `tracing`: human text (the default) or one JSON object a line, to
//! stderr, filtered by `RUST_LOG` (defaults to `info`).
//!
//! Credentials stay out of logs by construction: no event carries a header, a key or a
//! credential, and [`Settings`](crate::Settings)' `Debug` hides them. As a last line of
//! defence the writer scrubs every line it is given: the gateway's own upstream
//! credentials, and anything shaped like a tokenbudget key (`tbk_` and hex digits), become
//! `<redacted>` before a byte reaches the output (a dependency logging at `trace` included).

use std::io::{self, Write};
use std::str::FromStr;
use std::sync::Arc;

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::error::{Error, Result};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable text lines. Defaults to this.
    #[default]
    Text,
    /// One JSON object a line: `timestamp`, `level`, `target`, `fields` (`message` and the
    /// event's fields), `span` and `spans`.
    Json,
}

impl FromStr for LogFormat {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(Error::Config {
                setting: "--log-format".into(),
                reason: format!("{other:?}: expected \"text\" or \"json\""),
            }),
        }
    }
}

/// What the writer scrubs: the given secrets, and every `tbk_` key.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

/// What a scrubbed secret is replaced with.
pub const REDACTED: &str = "<redacted>";

/// `tbk_` keys are `tbk_` and 64 hex digits; anything from 8 hex digits on is scrubbed.
const KEY_PREFIX: &str = "tbk_";
const MIN_KEY_HEX: usize = 8;

impl Redactor {
    /// Scrubs `secrets` (empty ones are ignored) and every `tbk_` key.
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let mut secrets: Vec<String> = secrets.into_iter().filter(|s| !s.is_empty()).collect();
        // Longest first, so a secret that contains another is scrubbed whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Self { secrets }
    }

    /// `line` with every secret and key replaced by [`REDACTED`].
    pub fn redact(&self, line: &str) -> String {
        let mut out = line.to_owned();
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), REDACTED);
            }
        }
        redact_keys(&out)
    }
}

fn redact_keys(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(at) = rest.find(KEY_PREFIX) {
        let (before, from) = rest.split_at(at);
        out.push_str(before);
        let tail = &from[KEY_PREFIX.len()..];
        let hex = tail.bytes().take_while(|b| b.is_ascii_hexdigit()).count();
        if hex >= MIN_KEY_HEX {
            out.push_str(KEY_PREFIX);
            out.push_str(REDACTED);
        } else {
            out.push_str(&from[..KEY_PREFIX.len() + hex]);
        }
        rest = &tail[hex..];
    }
    out.push_str(rest);
    out
}

/// A [`MakeWriter`] that scrubs each formatted event before passing it on. The formatter
/// hands over one whole event per write, so a secret is never split across two writes.
#[derive(Clone)]
pub struct RedactingWriter<M> {
    inner: M,
    redactor: Arc<Redactor>,
}

impl<M> RedactingWriter<M> {
    /// Scrubs with `redactor`, then writes to `inner`.
    pub fn new(inner: M, redactor: Redactor) -> Self {
        Self {
            inner,
            redactor: Arc::new(redactor),
        }
    }
}

/// One event's writer.
pub struct Scrubbed<W> {
    inner: W,
    redactor: Arc<Redactor>,
}

impl<W: Write> Write for Scrubbed<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.inner
            .write_all(self.redactor.redact(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for RedactingWriter<M> {
    type Writer = Scrubbed<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        Scrubbed {
            inner: self.inner.make_writer(),
            redactor: self.redactor.clone(),
        }
    }
}

/// The filter: `RUST_LOG` when set and valid, else `info`.
pub fn env_filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
}

/// A subscriber writing `format` lines that pass `filter` through `writer`, scrubbed by
/// `redactor`.
pub fn subscriber<M>(
    format: LogFormat,
    filter: EnvFilter,
    redactor: Redactor,
    writer: M,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    M: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let writer = RedactingWriter::new(writer, redactor);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(writer);
    match format {
        LogFormat::Text => Box::new(builder.finish()),
        LogFormat::Json => Box::new(
            builder
                .json()
                .with_current_span(true)
                .with_span_list(true)
                .finish(),
        ),
    }
}

/// Installs the process's logger: `format` lines to stderr, filtered by `RUST_LOG`
/// (defaults to `info`), scrubbing `secrets`.
///
/// # Errors
/// [`Error::Config`] when a global logger is already installed.
pub fn init(format: LogFormat, secrets: impl IntoIterator<Item = String>) -> Result<()> {
    let subscriber = subscriber(format, env_filter(), Redactor::new(secrets), io::stderr);
    tracing::subscriber::set_global_default(subscriber).map_err(|e| Error::Config {
        setting: "--log-format".into(),
        reason: e.to_string(),
    })
}

/// Says where the gateway listens: in text, the line `cargo xtask e2e` and people read
/// (`tokenbudget gateway listening on http://…`); in JSON, an event like every other line.
pub fn listening(format: LogFormat, addr: std::net::SocketAddr) {
    let url = format!("http://{addr}");
    match format {
        LogFormat::Text => eprintln!("tokenbudget gateway listening on {url}"),
        LogFormat::Json => tracing::info!(url, "listening"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_and_keys_are_scrubbed_and_the_rest_kept() {
        let key = format!("tbk_{}", "0123456789abcdef".repeat(4));
        let r = Redactor::new(["sk-ant-secret".to_owned(), String::new()]);
        let cases = [
            ("plain line", "plain line".to_owned()),
            ("upstream sk-ant-secret!", format!("upstream {REDACTED}!")),
            (
                &*format!("{{\"k\":\"{key}\"}}"),
                format!("{{\"k\":\"tbk_{REDACTED}\"}}"),
            ),
            (
                &*format!("Bearer {key} and {key}"),
                format!("Bearer tbk_{REDACTED} and tbk_{REDACTED}"),
            ),
            // Too short to be a key: kept (a budget named tbk_x, say).
            ("tbk_abc tbk_", "tbk_abc tbk_".to_owned()),
            ("ütf8 tbk_deadbeef00 ü", format!("ütf8 tbk_{REDACTED} ü")),
        ];
        for (line, want) in cases {
            assert_eq!(r.redact(line), want, "{line}");
        }
    }

    #[test]
    fn a_secret_containing_another_is_scrubbed_whole() {
        let r = Redactor::new(["abc".to_owned(), "xxabcxx".to_owned()]);
        assert_eq!(
            r.redact("1 xxabcxx 2 abc"),
            format!("1 {REDACTED} 2 {REDACTED}")
        );
    }

    #[test]
    fn log_format_names() {
        assert_eq!("json".parse::<LogFormat>().unwrap(), LogFormat::Json);
        assert_eq!("text".parse::<LogFormat>().unwrap(), LogFormat::Text);
        assert!("yaml".parse::<LogFormat>().is_err());
    }
}
