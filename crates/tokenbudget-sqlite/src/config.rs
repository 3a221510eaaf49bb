//! How to open a SQLite store: where the database is and how it is tuned.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokenbudget_core::{Error, Result};

/// Options for [`SqliteStore::open_with`](crate::SqliteStore::open_with).
///
/// ```
/// use std::time::Duration;
/// use tokenbudget_sqlite::{Config, Synchronous};
///
/// let config = Config::new("sqlite://budgets.db")
///     .with_synchronous(Synchronous::Normal)
///     .with_busy_timeout(Duration::from_secs(2));
/// assert_eq!(config.read_connections, 4);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Config {
    /// The database: a path (`budgets.db`), a URL (`sqlite://budgets.db`,
    /// `sqlite:///var/lib/app/budgets.db`) or `sqlite::memory:` for one in-memory database
    /// private to this store.
    ///
    /// Defaults to `sqlite://tokenbudget.db` (in the working directory).
    pub url: String,
    /// How hard each commit pushes data to stable storage.
    ///
    /// Defaults to [`Synchronous::Full`]: an acknowledged operation survives power loss.
    pub synchronous: Synchronous,
    /// How long SQLite's busy handler waits for another *process* holding the write lock before
    /// an attempt fails (operations of this process queue on its one writer connection instead).
    ///
    /// Defaults to 5 s. Serialized as `busy_timeout_ms`.
    #[serde(rename = "busy_timeout_ms", with = "millis")]
    pub busy_timeout: Duration,
    /// How long an operation keeps retrying its whole transaction while the database stays
    /// locked by other processes, before failing with a retryable
    /// [`Error::Storage`](tokenbudget_core::Error::Storage).
    ///
    /// Defaults to 30 s. Serialized as `retry_deadline_ms`.
    #[serde(rename = "retry_deadline_ms", with = "millis")]
    pub retry_deadline: Duration,
    /// Connections in the read pool (reads never wait for the writer in WAL mode). Ignored for
    /// `sqlite::memory:`, where the single connection serves reads and writes.
    ///
    /// Defaults to 4.
    pub read_connections: u32,
    /// Creates the database file when it does not exist.
    ///
    /// Defaults to `true`.
    pub create_if_missing: bool,
    /// Makes processes sharing the database file take turns at writing, through `flock` on
    /// two lock files next to it (`<db>-writer.lock`, `<db>-turnstile.lock`), instead of
    /// polling SQLite's lock, where a busy process starves the others. Unix only; elsewhere,
    /// or when off, SQLite's lock and [`Config::busy_timeout`] alone order the processes.
    ///
    /// Defaults to `true`.
    pub writer_queue: bool,
    /// How often a background task checkpoints the write-ahead log into the database file
    /// (`PRAGMA wal_checkpoint(PASSIVE)` on a read connection), so that the writer does not.
    /// Left to itself SQLite checkpoints inside the commit that takes the log past 1,000
    /// pages, copying them and syncing the database file while every queued operation waits:
    /// measured with 16 tasks on 1,000 budgets, that took p99 from about 7 ms to 12-14 ms.
    /// The writer still checkpoints by itself past 10,000 pages, should the background task
    /// fall behind. Zero leaves checkpoints to SQLite. Ignored for `sqlite::memory:`.
    ///
    /// Defaults to 200 ms. Serialized as `checkpoint_interval_ms`.
    #[serde(rename = "checkpoint_interval_ms", with = "millis")]
    pub checkpoint_interval: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            url: "sqlite://tokenbudget.db".to_owned(),
            synchronous: Synchronous::default(),
            busy_timeout: Duration::from_secs(5),
            retry_deadline: Duration::from_secs(30),
            read_connections: 4,
            create_if_missing: true,
            writer_queue: true,
            checkpoint_interval: Duration::from_millis(200),
        }
    }
}

impl Config {
    /// The defaults, for the database at `url` (a path or a `sqlite:` URL).
    pub fn new(url: impl Into<String>) -> Self {
        Self::default().with_url(url)
    }

    /// The defaults, overridden by whichever of these environment variables are set:
    /// `TOKENBUDGET_SQLITE_URL`, `TOKENBUDGET_SQLITE_SYNCHRONOUS` (`normal`, `full`, `extra`),
    /// `TOKENBUDGET_SQLITE_BUSY_TIMEOUT_MS`, `TOKENBUDGET_SQLITE_RETRY_DEADLINE_MS`,
    /// `TOKENBUDGET_SQLITE_READ_CONNECTIONS`, `TOKENBUDGET_SQLITE_CREATE_IF_MISSING`,
    /// `TOKENBUDGET_SQLITE_WRITER_QUEUE` (`true`, `false`),
    /// `TOKENBUDGET_SQLITE_CHECKPOINT_INTERVAL_MS`.
    ///
    /// A variable that is set but invalid is [`Error::Config`].
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`Config::from_env`] over any source of variables (tests pass a map).
    fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let mut config = Self::default();
        if let Some(url) = var("TOKENBUDGET_SQLITE_URL") {
            config.url = url;
        }
        if let Some(value) = var("TOKENBUDGET_SQLITE_SYNCHRONOUS") {
            config.synchronous = value.parse()?;
        }
        if let Some(value) = var("TOKENBUDGET_SQLITE_BUSY_TIMEOUT_MS") {
            config.busy_timeout = Duration::from_millis(parse("BUSY_TIMEOUT_MS", &value)?);
        }
        if let Some(value) = var("TOKENBUDGET_SQLITE_RETRY_DEADLINE_MS") {
            config.retry_deadline = Duration::from_millis(parse("RETRY_DEADLINE_MS", &value)?);
        }
        if let Some(value) = var("TOKENBUDGET_SQLITE_READ_CONNECTIONS") {
            config.read_connections = parse("READ_CONNECTIONS", &value)?;
        }
        if let Some(value) = var("TOKENBUDGET_SQLITE_CREATE_IF_MISSING") {
            config.create_if_missing = parse("CREATE_IF_MISSING", &value)?;
        }
        if let Some(value) = var("TOKENBUDGET_SQLITE_WRITER_QUEUE") {
            config.writer_queue = parse("WRITER_QUEUE", &value)?;
        }
        if let Some(value) = var("TOKENBUDGET_SQLITE_CHECKPOINT_INTERVAL_MS") {
            config.checkpoint_interval =
                Duration::from_millis(parse("CHECKPOINT_INTERVAL_MS", &value)?);
        }
        Ok(config)
    }

    /// Sets [`Config::url`].
    pub fn with_url(mut self, url: impl Into<String>) -> Self {
        self.url = url.into();
        self
    }

    /// Sets [`Config::synchronous`].
    pub fn with_synchronous(mut self, synchronous: Synchronous) -> Self {
        self.synchronous = synchronous;
        self
    }

    /// Sets [`Config::busy_timeout`].
    pub fn with_busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// Sets [`Config::checkpoint_interval`] (zero: SQLite's own checkpoints).
    pub fn with_checkpoint_interval(mut self, interval: Duration) -> Self {
        self.checkpoint_interval = interval;
        self
    }

    /// Sets [`Config::retry_deadline`].
    pub fn with_retry_deadline(mut self, deadline: Duration) -> Self {
        self.retry_deadline = deadline;
        self
    }

    /// Sets [`Config::read_connections`] (at least 1).
    pub fn with_read_connections(mut self, connections: u32) -> Self {
        self.read_connections = connections.max(1);
        self
    }

    /// Sets [`Config::create_if_missing`].
    pub fn with_create_if_missing(mut self, create: bool) -> Self {
        self.create_if_missing = create;
        self
    }

    /// Sets [`Config::writer_queue`].
    pub fn with_writer_queue(mut self, queue: bool) -> Self {
        self.writer_queue = queue;
        self
    }
}

fn parse<T: std::str::FromStr>(name: &str, value: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    value.trim().parse().map_err(|e| Error::Config {
        message: format!("TOKENBUDGET_SQLITE_{name}={value:?}: {e}"),
    })
}

/// SQLite's `synchronous` setting, in WAL mode.
///
/// # Note
/// What an acknowledged operation survives, and what it costs (see the crate README):
///
/// - `Normal`: survives a crash of the process (kill -9) but not of the OS or a power loss: the
///   last commits may be rolled back then. No fsync per commit.
/// - `Full`: also survives power loss; one fsync of the WAL per commit (a commit carries a
///   whole batch of queued operations, so the fsync is shared under load).
/// - `Extra`: `Full` plus an fsync of the directory after the WAL is reset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Synchronous {
    /// Durable across process crashes, not across power loss.
    Normal,
    /// Durable across power loss. The default.
    #[default]
    Full,
    /// `Full` with an extra directory sync.
    Extra,
}

impl Synchronous {
    /// The pragma value: `NORMAL`, `FULL` or `EXTRA`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "NORMAL",
            Self::Full => "FULL",
            Self::Extra => "EXTRA",
        }
    }
}

impl std::str::FromStr for Synchronous {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "normal" => Ok(Self::Normal),
            "full" => Ok(Self::Full),
            "extra" => Ok(Self::Extra),
            other => Err(Error::Config {
                message: format!("synchronous {other:?}: expected normal, full or extra"),
            }),
        }
    }
}

/// `Duration` as whole milliseconds in config files.
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn defaults_are_the_documented_ones() {
        let config = Config::default();
        assert_eq!(config.url, "sqlite://tokenbudget.db");
        assert_eq!(config.synchronous, Synchronous::Full);
        assert_eq!(config.busy_timeout, Duration::from_secs(5));
        assert_eq!(config.retry_deadline, Duration::from_secs(30));
        assert_eq!(config.read_connections, 4);
        assert!(config.create_if_missing);
        assert!(config.writer_queue);
        assert_eq!(config.checkpoint_interval, Duration::from_millis(200));
    }

    #[test]
    fn env_overrides_and_rejects_bad_values() {
        let vars: HashMap<&str, &str> = [
            ("TOKENBUDGET_SQLITE_URL", "sqlite::memory:"),
            ("TOKENBUDGET_SQLITE_SYNCHRONOUS", "Normal"),
            ("TOKENBUDGET_SQLITE_BUSY_TIMEOUT_MS", "250"),
            ("TOKENBUDGET_SQLITE_READ_CONNECTIONS", "2"),
            ("TOKENBUDGET_SQLITE_CHECKPOINT_INTERVAL_MS", "0"),
        ]
        .into();
        let config = Config::from_lookup(|k| vars.get(k).map(|v| (*v).to_owned())).unwrap();
        assert_eq!(config.url, "sqlite::memory:");
        assert_eq!(config.synchronous, Synchronous::Normal);
        assert_eq!(config.busy_timeout, Duration::from_millis(250));
        assert_eq!(config.read_connections, 2);
        assert_eq!(config.checkpoint_interval, Duration::ZERO);
        assert_eq!(config.retry_deadline, Duration::from_secs(30));

        let bad = Config::from_lookup(|k| {
            (k == "TOKENBUDGET_SQLITE_BUSY_TIMEOUT_MS").then(|| "soon".to_owned())
        });
        assert!(
            matches!(bad, Err(Error::Config { message }) if message.contains("BUSY_TIMEOUT_MS"))
        );
        let bad = Config::from_lookup(|k| {
            (k == "TOKENBUDGET_SQLITE_SYNCHRONOUS").then(|| "off".to_owned())
        });
        assert!(matches!(bad, Err(Error::Config { .. })));
    }

    #[test]
    fn serde_fills_missing_fields_with_defaults() {
        let config: Config =
            serde_json::from_str(r#"{"url":"a.db","busy_timeout_ms":100,"synchronous":"normal"}"#)
                .unwrap();
        assert_eq!(config.url, "a.db");
        assert_eq!(config.busy_timeout, Duration::from_millis(100));
        assert_eq!(config.synchronous, Synchronous::Normal);
        assert_eq!(config.read_connections, 4);
        let json = serde_json::to_value(&config).unwrap();
        assert_eq!(json["busy_timeout_ms"], 100);
        assert_eq!(json["retry_deadline_ms"], 30_000);
    }
}
