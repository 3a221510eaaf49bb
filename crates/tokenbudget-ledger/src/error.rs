//! The ledger's error type.

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong reading sources or talking to a usage store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A source file or directory could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The store failed; nothing of the failed call was written.
    #[error("usage store: {message}")]
    Storage {
        /// What the database said.
        message: String,
        /// Worth retrying (a busy database, a serialization failure).
        retryable: bool,
    },
    /// A record to write is not valid (a key longer than 255 bytes, an empty key).
    #[error("invalid usage record {key:?}: {reason}")]
    InvalidRecord {
        /// The record's key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A report argument is not valid (an unknown time zone, an empty range).
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// The argument.
        what: &'static str,
        /// Why.
        reason: String,
    },
}

impl Error {
    /// Whether repeating the call may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Storage {
                retryable: true,
                ..
            }
        )
    }

    /// A storage error from any displayable database error.
    pub fn storage(e: impl std::fmt::Display, retryable: bool) -> Self {
        Self::Storage {
            message: e.to_string(),
            retryable,
        }
    }
}
