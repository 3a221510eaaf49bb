//! Writing results: text for people, one JSON object per line for scripts.

use std::io::{self, Write};

use serde_json::Value;

use crate::failure::Failure;

/// Standard output in the mode `--json` chose.
pub struct Out {
    json: bool,
    stdout: io::StdoutLock<'static>,
}

impl Out {
    pub fn new(json: bool) -> Self {
        Self {
            json,
            stdout: io::stdout().lock(),
        }
    }

    pub fn is_json(&self) -> bool {
        self.json
    }

    /// Writes `value` as one line of JSON (in `--json` mode) or `text()` (otherwise).
    pub fn emit(&mut self, value: Value, text: impl FnOnce() -> String) -> Result<(), Failure> {
        if self.json {
            self.line(&value.to_string())
        } else {
            self.line(&text())
        }
    }

    /// Writes one line.
    pub fn line(&mut self, line: &str) -> Result<(), Failure> {
        writeln!(self.stdout, "{line}").map_err(write_failure)
    }

    pub fn flush(&mut self) -> Result<(), Failure> {
        self.stdout.flush().map_err(write_failure)
    }
}

/// A closed pipe (`tokenbudget budget list | head -1`) is how readers say they have enough:
/// the caller treats it as success.
fn write_failure(e: io::Error) -> Failure {
    if e.kind() == io::ErrorKind::BrokenPipe {
        Failure {
            code: crate::failure::OK,
            message: String::new(),
        }
    } else {
        Failure::error(format!("writing output: {e}"))
    }
}
