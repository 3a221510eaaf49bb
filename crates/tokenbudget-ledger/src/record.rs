//! The usage record: one row of the ledger per model response.

use serde::{Deserialize, Serialize};

/// Every usage count of one response, each its own integer.
///
/// `cache_write_5m + cache_write_1h` is the response's `cache_creation_input_tokens`: when a
/// source gives no split (`usage.cache_creation`), all of it is counted as 5-minute writes, the
/// only kind that existed before the split.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Usage {
    /// `input_tokens`: uncached input.
    pub input: u64,
    /// `output_tokens`.
    pub output: u64,
    /// Cache writes with a 5-minute lifetime.
    pub cache_write_5m: u64,
    /// Cache writes with a 1-hour lifetime.
    pub cache_write_1h: u64,
    /// `cache_read_input_tokens`.
    pub cache_read: u64,
    /// `server_tool_use.web_search_requests`.
    pub web_search_requests: u64,
    /// `server_tool_use.web_fetch_requests`.
    pub web_fetch_requests: u64,
}

impl Usage {
    /// The stores' column of each count, in field order (the same names in SQLite and
    /// Postgres, in `usage_records` and in aggregate rows).
    pub const COLUMNS: [&'static str; 7] = [
        "input",
        "output",
        "cache_write_5m",
        "cache_write_1h",
        "cache_read",
        "web_search_requests",
        "web_fetch_requests",
    ];

    /// The usage of a database row, reading each count with `get` by its column name
    /// ([`Usage::COLUMNS`]): one mapping for every store and every row type.
    pub fn from_columns<E>(mut get: impl FnMut(&str) -> Result<u64, E>) -> Result<Self, E> {
        let [input, output, cache_write_5m, cache_write_1h, cache_read, web_search_requests, web_fetch_requests] =
            Self::COLUMNS;
        Ok(Self {
            input: get(input)?,
            output: get(output)?,
            cache_write_5m: get(cache_write_5m)?,
            cache_write_1h: get(cache_write_1h)?,
            cache_read: get(cache_read)?,
            web_search_requests: get(web_search_requests)?,
            web_fetch_requests: get(web_fetch_requests)?,
        })
    }

    /// Every token (input, output, cache writes and reads); requests are not tokens.
    pub fn total_tokens(&self) -> u64 {
        self.input
            .saturating_add(self.output)
            .saturating_add(self.cache_write_5m)
            .saturating_add(self.cache_write_1h)
            .saturating_add(self.cache_read)
    }

    /// Field-wise sum, saturating.
    pub fn add(&mut self, other: &Usage) {
        self.input = self.input.saturating_add(other.input);
        self.output = self.output.saturating_add(other.output);
        self.cache_write_5m = self.cache_write_5m.saturating_add(other.cache_write_5m);
        self.cache_write_1h = self.cache_write_1h.saturating_add(other.cache_write_1h);
        self.cache_read = self.cache_read.saturating_add(other.cache_read);
        self.web_search_requests = self
            .web_search_requests
            .saturating_add(other.web_search_requests);
        self.web_fetch_requests = self
            .web_fetch_requests
            .saturating_add(other.web_fetch_requests);
    }
}

/// Where a record came from.
pub mod source {
    /// A Claude Code transcript line.
    pub const CLAUDE_CODE: &str = "claude-code";
    /// A response the gateway carried (written by its ledger sink).
    pub const GATEWAY: &str = "gateway";
}

/// One model response's usage, as the ledger stores it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRecord {
    /// The de-duplication key ([`crate::dedup`]); unique in the ledger.
    pub key: String,
    /// Where it came from ([`source`]).
    pub source: String,
    /// The machine label given at import (`--machine`), empty when none.
    pub machine: String,
    /// The session id.
    pub session_id: String,
    /// The project (Claude Code: the project directory's name).
    pub project: String,
    /// The model that answered.
    pub model: String,
    /// When the response was written, in microseconds since the Unix epoch (UTC).
    pub timestamp: i64,
    /// The usage counts.
    pub usage: Usage,
    /// The source's `usage` JSON exactly as read.
    pub raw_usage: String,
    /// The file the record was read from (for transcripts), as given to the importer.
    pub file: String,
    /// The byte offset of the line in `file`.
    pub offset: u64,
    /// Whether the usage is partly estimated (a gateway stream cut before its final usage
    /// event); always false for transcripts, which only hold what the API reported.
    pub estimated: bool,
    /// The budget the response was charged to, when it was (`import --charge`, the gateway).
    pub budget: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_columns_reads_each_count_from_its_column() {
        let u = Usage::from_columns(|c| {
            Ok::<_, ()>(Usage::COLUMNS.iter().position(|x| *x == c).unwrap() as u64 + 1)
        })
        .unwrap();
        assert_eq!(
            u,
            Usage {
                input: 1,
                output: 2,
                cache_write_5m: 3,
                cache_write_1h: 4,
                cache_read: 5,
                web_search_requests: 6,
                web_fetch_requests: 7,
            }
        );
        assert_eq!(Usage::from_columns(|_| Err::<u64, _>("bad")), Err("bad"));
    }
}
