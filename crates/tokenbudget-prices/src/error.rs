//! The crate's one error type.

use std::path::PathBuf;

use crate::usage::TokenKind;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a price table could not be loaded, a model priced, or an amount parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No entry of the table answers to this model name, under any alias.
    #[error(
        "unknown model {model:?}: no price for it{}",
        did_you_mean(suggestions)
    )]
    UnknownModel {
        /// The name as given.
        model: String,
        /// Close names the table does have (at most three), best first.
        suggestions: Vec<String>,
    },

    /// The usage has tokens of a kind the model's entry has no price for (for example 1 hour
    /// cache writes on an entry that lists only 5 minute ones). Never priced as zero.
    #[error("model {model:?} has no price for {kind} tokens")]
    MissingPrice {
        /// The table entry that priced the request.
        model: String,
        /// The kind without a price.
        kind: TokenKind,
    },

    /// The model's entry has a price that is not an exact, non-negative whole number of
    /// pico-dollars per token. The entry was rejected when the table was loaded; the other
    /// entries are usable.
    #[error("model {model:?}: price {field} = {text} {reason}")]
    InvalidPrice {
        /// The entry's key.
        model: String,
        /// The LiteLLM field, e.g. `input_cost_per_token`.
        field: String,
        /// The value as written in the file.
        text: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The price file is not a JSON object of model entries.
    #[error("invalid price file{}: {reason}", source_name.as_deref().map(|s| format!(" {s}")).unwrap_or_default())]
    InvalidFile {
        /// The file, when it came from one.
        source_name: Option<String>,
        /// What is wrong with it.
        reason: String,
    },

    /// The price file could not be read.
    #[error("reading price file {}: {reason}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's message.
        reason: String,
    },

    /// The cost does not fit in a [`MicroUsd`](crate::MicroUsd) (more than about
    /// 18 trillion dollars).
    #[error("the cost of this usage of {model:?} is too large to represent")]
    Overflow {
        /// The table entry that priced the request.
        model: String,
    },

    /// A dollar amount could not be parsed.
    #[error("invalid dollar amount {text:?}: {reason}")]
    InvalidAmount {
        /// The text as given.
        text: String,
        /// What is wrong with it.
        reason: String,
    },
}

fn did_you_mean(suggestions: &[String]) -> String {
    if suggestions.is_empty() {
        String::new()
    } else {
        format!(" (did you mean {}?)", suggestions.join(", "))
    }
}
