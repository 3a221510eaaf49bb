//! Why a command failed, and the exit code that says so.

use std::fmt;
use std::process::ExitCode;

use tokenbudget::{CoreError, Refusal};

/// The exit codes, part of the interface for scripts.
pub const OK: u8 = 0;
pub const ERROR: u8 = 1;
pub const USAGE: u8 = 2;
pub const REFUSED: u8 = 3;

/// A failed command: the exit code and one line for stderr.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn usage(message: impl fmt::Display) -> Self {
        Self {
            code: USAGE,
            message: message.to_string(),
        }
    }

    pub fn error(message: impl fmt::Display) -> Self {
        Self {
            code: ERROR,
            message: message.to_string(),
        }
    }

    pub fn refused(refusal: &Refusal) -> Self {
        Self {
            code: REFUSED,
            message: format!("refused: {refusal}"),
        }
    }

    /// Prefixes the message with what was being done.
    pub fn context(mut self, what: impl fmt::Display) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }

    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.code)
    }
}

impl From<tokenbudget::Error> for Failure {
    fn from(e: tokenbudget::Error) -> Self {
        use tokenbudget::Error as E;
        let code = match &e {
            E::Core(core) => core_code(core),
            E::InvalidUrl { .. } | E::FeatureNotEnabled { .. } | E::UnknownScheme { .. } => USAGE,
            E::Count(tokenbudget::counter::Error::Config(_)) => USAGE,
            _ => ERROR,
        };
        Self {
            code,
            message: with_causes(&e),
        }
    }
}

/// `e` and its sources, each added only when it says something new: drivers put the useful
/// part ("Connection refused", "database \"x\" does not exist") in a source whose parent
/// only says "error connecting to server" or "db error".
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !text.is_empty() && !message.contains(&text) {
            message = format!("{message}: {text}");
        }
        source = cause.source();
    }
    message
}

impl From<CoreError> for Failure {
    fn from(e: CoreError) -> Self {
        tokenbudget::Error::from(e).into()
    }
}

/// Bad values on the command line are usage errors; the state of the budgets (unknown,
/// conflicting) and storage failures are errors.
fn core_code(e: &CoreError) -> u8 {
    match e {
        CoreError::InvalidBudgetId { .. }
        | CoreError::InvalidReservationId { .. }
        | CoreError::InvalidIdempotencyKey { .. }
        | CoreError::InvalidAmount { .. }
        | CoreError::InvalidTimeout { .. }
        | CoreError::InvalidNote { .. }
        | CoreError::Config { .. } => USAGE,
        _ => ERROR,
    }
}

/// `message` on one line: a multi-line driver error must not break the one-line contract.
pub fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}
