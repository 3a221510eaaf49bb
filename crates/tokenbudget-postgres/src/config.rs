//! How to open a Postgres store: where the database is, which schema, and the pool's limits.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokenbudget_core::{Error, Result};

/// The environment variable [`Config::from_env`] reads the database URL from.
pub const DATABASE_URL_ENV: &str = "TOKENBUDGET_DATABASE_URL";

/// Whose clock an operation decides with: when holds expire, and the times stamped on
/// reservations and events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ClockSource {
    /// The database's clock (`clock_timestamp()`), read inside each transaction once its row
    /// locks are granted. Every process on the database then decides with one clock, however
    /// far the hosts' own clocks drift apart: a host whose clock runs fast cannot expire other
    /// hosts' holds early. The `now` an operation is given is ignored.
    #[default]
    Database,
    /// The `now` each operation is given (the tracker's clock): for one host, or for tests that
    /// inject a clock.
    Caller,
}

/// Options for [`PostgresStore::open_with`](crate::PostgresStore::open).
///
/// ```
/// use std::time::Duration;
/// use tokenbudget_postgres::Config;
///
/// let config = Config::new("postgres://app:s3cret@db.internal:5432/budgets?schema=tenant_a")?
///     .with_pool_size(16)
///     .with_wait_timeout(Duration::from_secs(2));
/// assert_eq!(config.schema, "tenant_a");
/// assert!(!format!("{config:?}").contains("s3cret"));
/// # Ok::<(), tokenbudget_core::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Config {
    /// The database, as a `postgres://` URL or a libpq `key=value` string (TLS is not
    /// supported: `sslmode=require` fails to connect). A `schema` query parameter sets
    /// [`Config::schema`] and is removed before connecting.
    ///
    /// Defaults to `postgres://postgres@127.0.0.1:5432/postgres`.
    pub url: String,
    /// The schema holding the store's tables, created by the migrations when missing. Lowercase
    /// letters, digits and `_`, at most 63 characters, not starting with a digit or `pg_`.
    ///
    /// Defaults to `tokenbudget`.
    pub schema: String,
    /// The `application_name` of every connection (visible in `pg_stat_activity`).
    ///
    /// Defaults to `tokenbudget`.
    pub application_name: String,
    /// The most connections the pool opens. Operations beyond it queue in the pool. Spread
    /// over many budgets, more connections do better (more commits share a WAL flush); on one
    /// hot budget tree [`Config::root_concurrency`] keeps them from all queueing on its row.
    ///
    /// Defaults to 8.
    pub pool_size: usize,
    /// The most batches of this store in flight at once that touch one budget tree (a root
    /// budget and everything under it, whose writes all take the tree's lock). The writes
    /// queued meanwhile wait in the process and run together, as one batch, with those queued
    /// on other trees: one transaction, one lock acquisition per tree, one WAL flush for all of
    /// them (at most [`Config::max_batch`], at most [`Config::max_batches`] batches in flight).
    /// A batch starts as soon as a leader is free, with whatever is queued: nobody waits for a
    /// batch to fill. 0 turns batching off (every write its own transaction, with no limit).
    /// Other processes are not counted: each batches its own.
    ///
    /// Defaults to 1: while a batch holds the tree's lock, the writes arriving queue here and
    /// all run in the next batch. With 2, the next batch waits on the row lock in the server
    /// and the writes are split between two smaller batches; on one hot budget at 32 tasks
    /// that measured 951–1,007 pairs/s against 1,698–1,790 with 1 (`cargo xtask bench`).
    pub root_concurrency: usize,
    /// The most writes one batch runs in its transaction (see [`Config::root_concurrency`]).
    /// A batch may span trees: it takes the lock of each tree it touches, in one statement.
    /// At least 1.
    ///
    /// Defaults to 128.
    pub max_batch: usize,
    /// The most batches of this store in flight at once, over every tree (each holds a
    /// pooled connection while it runs; past [`Config::pool_size`] the pool's size is the
    /// limit). Writes arriving while every batch is in flight wait for the next one, which
    /// takes them all: on many independent budgets a few large batches flush more writes per
    /// WAL flush than many small ones, and leave connections for reads and for the writes that
    /// run alone (budget creation, sweeps, a tree's first write). At least 1.
    ///
    /// Defaults to 2.
    pub max_batches: usize,
    /// How long an operation waits for a free connection before failing (retryable).
    ///
    /// Defaults to 5 s. Serialized as `wait_timeout_ms`.
    #[serde(rename = "wait_timeout_ms", with = "millis")]
    pub wait_timeout: Duration,
    /// How long opening a connection may take.
    ///
    /// Defaults to 5 s. Serialized as `create_timeout_ms`.
    #[serde(rename = "create_timeout_ms", with = "millis")]
    pub create_timeout: Duration,
    /// How long the check of a pooled connection before reuse may take; a connection that
    /// fails it or takes longer is discarded and a new one opened.
    ///
    /// Defaults to 2 s. Serialized as `recycle_timeout_ms`.
    #[serde(rename = "recycle_timeout_ms", with = "millis")]
    pub recycle_timeout: Duration,
    /// Postgres `lock_timeout`: the longest wait for a budget's row lock before the attempt
    /// fails (and is retried).
    ///
    /// Defaults to 10 s. Serialized as `lock_timeout_ms`.
    #[serde(rename = "lock_timeout_ms", with = "millis")]
    pub lock_timeout: Duration,
    /// Postgres `statement_timeout` for every statement of the store.
    ///
    /// Defaults to 30 s. Serialized as `statement_timeout_ms`.
    #[serde(rename = "statement_timeout_ms", with = "millis")]
    pub statement_timeout: Duration,
    /// Postgres `idle_in_transaction_session_timeout`: the server ends a session left inside a
    /// transaction this long, a last line of defence behind the store's own cleanup.
    ///
    /// Defaults to 60 s. Serialized as `idle_in_transaction_timeout_ms`.
    #[serde(rename = "idle_in_transaction_timeout_ms", with = "millis")]
    pub idle_in_transaction_timeout: Duration,
    /// How many times one operation runs its whole transaction before giving up on deadlocks,
    /// serialization failures, lock timeouts and lost connections.
    ///
    /// Defaults to 6.
    pub max_attempts: u32,
    /// The backoff before the second attempt; it doubles with each further attempt (with
    /// jitter) up to [`Config::retry_max_delay`].
    ///
    /// Defaults to 5 ms. Serialized as `retry_base_delay_ms`.
    #[serde(rename = "retry_base_delay_ms", with = "millis")]
    pub retry_base_delay: Duration,
    /// The longest backoff between two attempts.
    ///
    /// Defaults to 500 ms. Serialized as `retry_max_delay_ms`.
    #[serde(rename = "retry_max_delay_ms", with = "millis")]
    pub retry_max_delay: Duration,
    /// Whose clock decides expiry and stamps times (see [`ClockSource`]).
    ///
    /// Defaults to [`ClockSource::Database`].
    pub clock: ClockSource,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            url: "postgres://postgres@127.0.0.1:5432/postgres".to_owned(),
            schema: "tokenbudget".to_owned(),
            application_name: "tokenbudget".to_owned(),
            pool_size: 8,
            root_concurrency: 1,
            max_batch: 128,
            max_batches: 2,
            wait_timeout: Duration::from_secs(5),
            create_timeout: Duration::from_secs(5),
            recycle_timeout: Duration::from_secs(2),
            lock_timeout: Duration::from_secs(10),
            statement_timeout: Duration::from_secs(30),
            idle_in_transaction_timeout: Duration::from_secs(60),
            max_attempts: 6,
            retry_base_delay: Duration::from_millis(5),
            retry_max_delay: Duration::from_millis(500),
            clock: ClockSource::Database,
        }
    }
}

impl Config {
    /// The defaults, for the database at `url`; a `schema` query parameter sets the schema.
    ///
    /// Returns [`Error::Config`] when the URL does not parse or the schema name is invalid.
    pub fn new(url: impl Into<String>) -> Result<Self> {
        let config = Self::default().with_url(url);
        config.validate()?;
        Ok(config)
    }

    /// The defaults for the database in `TOKENBUDGET_DATABASE_URL`.
    ///
    /// Returns [`Error::Config`] when the variable is unset or invalid.
    pub fn from_env() -> Result<Self> {
        let url = std::env::var(DATABASE_URL_ENV).map_err(|_| Error::Config {
            message: format!("{DATABASE_URL_ENV} is not set"),
        })?;
        Self::new(url)
    }

    /// Sets [`Config::url`]; a `schema` query parameter in it sets [`Config::schema`].
    pub fn with_url(mut self, url: impl Into<String>) -> Self {
        let (url, schema) = split_schema(&url.into());
        self.url = url;
        if let Some(schema) = schema {
            self.schema = schema;
        }
        self
    }

    /// Sets [`Config::schema`].
    pub fn with_schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// Sets [`Config::application_name`].
    pub fn with_application_name(mut self, name: impl Into<String>) -> Self {
        self.application_name = name.into();
        self
    }

    /// Sets [`Config::pool_size`] (at least 1).
    pub fn with_pool_size(mut self, size: usize) -> Self {
        self.pool_size = size.max(1);
        self
    }

    /// Sets [`Config::root_concurrency`] (0: no limit).
    pub fn with_root_concurrency(mut self, operations: usize) -> Self {
        self.root_concurrency = operations;
        self
    }

    /// Sets [`Config::max_batch`] (at least 1).
    pub fn with_max_batch(mut self, writes: usize) -> Self {
        self.max_batch = writes.max(1);
        self
    }

    /// Sets [`Config::max_batches`] (at least 1).
    pub fn with_max_batches(mut self, batches: usize) -> Self {
        self.max_batches = batches.max(1);
        self
    }

    /// How many batches may be in flight at once: [`Config::max_batches`], at most
    /// [`Config::pool_size`].
    pub fn batch_leaders(&self) -> usize {
        self.max_batches.clamp(1, self.pool_size.max(1))
    }

    /// Sets [`Config::wait_timeout`].
    pub fn with_wait_timeout(mut self, timeout: Duration) -> Self {
        self.wait_timeout = timeout;
        self
    }

    /// Sets [`Config::create_timeout`].
    pub fn with_create_timeout(mut self, timeout: Duration) -> Self {
        self.create_timeout = timeout;
        self
    }

    /// Sets [`Config::recycle_timeout`].
    pub fn with_recycle_timeout(mut self, timeout: Duration) -> Self {
        self.recycle_timeout = timeout;
        self
    }

    /// Sets [`Config::lock_timeout`].
    pub fn with_lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// Sets [`Config::statement_timeout`].
    pub fn with_statement_timeout(mut self, timeout: Duration) -> Self {
        self.statement_timeout = timeout;
        self
    }

    /// Sets [`Config::idle_in_transaction_timeout`].
    pub fn with_idle_in_transaction_timeout(mut self, timeout: Duration) -> Self {
        self.idle_in_transaction_timeout = timeout;
        self
    }

    /// Sets [`Config::max_attempts`] (at least 1).
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Sets [`Config::retry_base_delay`] and [`Config::retry_max_delay`].
    pub fn with_retry_delays(mut self, base: Duration, max: Duration) -> Self {
        self.retry_base_delay = base;
        self.retry_max_delay = max.max(base);
        self
    }

    /// Sets [`Config::clock`].
    pub fn with_clock(mut self, clock: ClockSource) -> Self {
        self.clock = clock;
        self
    }

    /// Checks the URL, the schema name and the batch limits.
    pub(crate) fn validate(&self) -> Result<()> {
        self.pg_config()?;
        check_schema(&self.schema)?;
        if self.max_batch == 0 {
            return Err(Error::Config {
                message: "max_batch must be at least 1".to_owned(),
            });
        }
        if self.max_batches == 0 {
            return Err(Error::Config {
                message: "max_batches must be at least 1".to_owned(),
            });
        }
        if self.application_name.len() > 63 || !self.application_name.is_ascii() {
            return Err(Error::Config {
                message: format!(
                    "application_name {:?} must be at most 63 ASCII characters",
                    self.application_name
                ),
            });
        }
        Ok(())
    }

    /// The connection settings for tokio-postgres: the URL plus the session settings every
    /// connection of the store runs with (`search_path`, `plan_cache_mode`, the timeouts).
    pub(crate) fn pg_config(&self) -> Result<tokio_postgres::Config> {
        let mut pg = tokio_postgres::Config::from_str(&self.url).map_err(|e| Error::Config {
            message: format!("invalid database URL {}: {e}", redact(&self.url)),
        })?;
        let mut options = pg.get_options().unwrap_or_default().to_owned();
        for (name, value) in [
            ("search_path", self.schema.clone()),
            // Every statement is an index lookup whose plan does not depend on its parameters;
            // left to choose, Postgres keeps re-planning the array-heavy write statement (its
            // custom plans look cheaper), which costs more than executing it.
            ("plan_cache_mode", "force_generic_plan".to_owned()),
            // A generic plan is made once per connection, and a store opened on a new
            // database makes it while its tables are empty: the planner then prefers scanning
            // the whole table (and hash joins on it) to the index, and keeps that plan while
            // the table grows, until an ANALYZE invalidates it. Seq scans are priced out so the
            // index lookups are chosen whatever the statistics say.
            ("enable_seqscan", "off".to_owned()),
            ("lock_timeout", millis_setting(self.lock_timeout)),
            ("statement_timeout", millis_setting(self.statement_timeout)),
            (
                "idle_in_transaction_session_timeout",
                millis_setting(self.idle_in_transaction_timeout),
            ),
        ] {
            if !options.is_empty() {
                options.push(' ');
            }
            options.push_str(&format!("-c {name}={value}"));
        }
        pg.options(options)
            .application_name(&self.application_name)
            .connect_timeout(self.create_timeout);
        Ok(pg)
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("url", &redact(&self.url))
            .field("schema", &self.schema)
            .field("application_name", &self.application_name)
            .field("pool_size", &self.pool_size)
            .field("root_concurrency", &self.root_concurrency)
            .field("max_batch", &self.max_batch)
            .field("max_batches", &self.max_batches)
            .field("wait_timeout", &self.wait_timeout)
            .field("create_timeout", &self.create_timeout)
            .field("recycle_timeout", &self.recycle_timeout)
            .field("lock_timeout", &self.lock_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .field(
                "idle_in_transaction_timeout",
                &self.idle_in_transaction_timeout,
            )
            .field("max_attempts", &self.max_attempts)
            .field("retry_base_delay", &self.retry_base_delay)
            .field("retry_max_delay", &self.retry_max_delay)
            .field("clock", &self.clock)
            .finish()
    }
}

/// Postgres reads a bare number as milliseconds; zero would disable the timeout, so at least 1.
fn millis_setting(d: Duration) -> String {
    d.as_millis().clamp(1, i32::MAX as u128).to_string()
}

fn check_schema(schema: &str) -> Result<()> {
    let valid = !schema.is_empty()
        && schema.len() <= 63
        && !schema.starts_with("pg_")
        && !schema.as_bytes()[0].is_ascii_digit()
        && schema
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(Error::Config {
            message: format!(
                "invalid schema name {schema:?}: expected 1-63 characters of [a-z0-9_], \
                 not starting with a digit or pg_"
            ),
        })
    }
}

/// Removes a `schema=` parameter from a URL's query string, returning it apart.
fn split_schema(url: &str) -> (String, Option<String>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_owned(), None);
    };
    let mut schema = None;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| match pair.strip_prefix("schema=") {
            Some(value) => {
                schema = Some(value.to_owned());
                false
            }
            None => !pair.is_empty(),
        })
        .collect();
    let url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    (url, schema)
}

/// The URL with any password replaced by `***`: in the user info of a URL, in a `password=`
/// query parameter, or in a libpq `password=` pair.
pub(crate) fn redact(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(scheme_end) = out.find("://") {
        let rest_start = scheme_end + 3;
        let authority_end = out[rest_start..]
            .find(['/', '?'])
            .map_or(out.len(), |i| rest_start + i);
        if let Some(at) = out[rest_start..authority_end].rfind('@') {
            let userinfo = &out[rest_start..rest_start + at];
            if let Some(colon) = userinfo.find(':') {
                out.replace_range(rest_start + colon + 1..rest_start + at, "***");
            }
        }
    }
    redact_pairs(&out)
}

/// Replaces the value of every `password=` key (query parameter or libpq pair).
fn redact_pairs(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("password=") {
        let preceded_ok = i == 0 || matches!(rest.as_bytes()[i - 1], b'?' | b'&' | b' ');
        out.push_str(&rest[..i + "password=".len()]);
        rest = &rest[i + "password=".len()..];
        if !preceded_ok {
            continue;
        }
        let end = if let Some(quoted) = rest.strip_prefix('\'') {
            quoted.find('\'').map_or(rest.len(), |j| j + 2)
        } else {
            rest.find(['&', ' ']).unwrap_or(rest.len())
        };
        out.push_str("***");
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

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
    use super::*;

    #[test]
    fn debug_and_redact_hide_passwords_in_every_form() {
        for (url, secret) in [
            ("postgres://app:s3cret@db:5432/x", "s3cret"),
            ("postgresql://app:p%40ss@db/x?sslmode=disable", "p%40ss"),
            (
                "postgres://app@db/x?password=hunter2&connect_timeout=3",
                "hunter2",
            ),
            ("host=db user=app password=topsecret dbname=x", "topsecret"),
            ("host=db password='with space' dbname=x", "with space"),
        ] {
            let redacted = redact(url);
            assert!(!redacted.contains(secret), "{url} -> {redacted}");
            assert!(redacted.contains("***"), "{url} -> {redacted}");
            let config = Config::default().with_url(url);
            assert!(!format!("{config:?}").contains(secret));
        }
        assert_eq!(
            redact("postgres://app:pw@db:5432/x?application_name=a"),
            "postgres://app:***@db:5432/x?application_name=a"
        );
        assert_eq!(redact("postgres://db/x"), "postgres://db/x");
    }

    #[test]
    fn schema_comes_from_the_url_and_is_validated() {
        let config = Config::new("postgres://db/x?schema=tenant_1&connect_timeout=3").unwrap();
        assert_eq!(config.schema, "tenant_1");
        assert_eq!(config.url, "postgres://db/x?connect_timeout=3");
        let config = Config::new("postgres://db/x?schema=t2").unwrap();
        assert_eq!(
            (config.url.as_str(), config.schema.as_str()),
            ("postgres://db/x", "t2")
        );
        for bad in ["", "Upper", "1st", "pg_x", "a-b", "a;drop", &"x".repeat(64)] {
            let err = Config::default().with_schema(bad).validate().unwrap_err();
            assert!(matches!(err, Error::Config { .. }), "{bad:?}");
        }
        assert!(matches!(
            Config::new("postgres://db:notaport/x"),
            Err(Error::Config { .. })
        ));
    }

    #[test]
    fn session_settings_are_passed_as_options() {
        let config = Config::new("postgres://db/x?options=-c%20work_mem%3D4MB")
            .unwrap()
            .with_schema("s1")
            .with_lock_timeout(Duration::from_millis(250));
        let pg = config.pg_config().unwrap();
        let options = pg.get_options().unwrap();
        assert!(options.starts_with("-c work_mem=4MB "), "{options}");
        assert!(options.contains("-c search_path=s1"), "{options}");
        assert!(options.contains("-c lock_timeout=250"), "{options}");
        assert_eq!(pg.get_application_name(), Some("tokenbudget"));
    }

    #[test]
    fn serde_uses_defaults_and_milliseconds() {
        let config: Config =
            serde_json::from_str(r#"{"url": "postgres://db/x", "wait_timeout_ms": 1500}"#).unwrap();
        assert_eq!(config.wait_timeout, Duration::from_millis(1500));
        assert_eq!(config.pool_size, Config::default().pool_size);
        assert_eq!(config.clock, ClockSource::Database);
        let json = serde_json::to_value(&config).unwrap();
        assert_eq!(json["wait_timeout_ms"], 1500);
        assert_eq!(json["clock"], "database");
        let config: Config = serde_json::from_str(r#"{"clock": "caller"}"#).unwrap();
        assert_eq!(config.clock, ClockSource::Caller);
    }

    #[test]
    fn batch_limits_are_validated_and_leaders_never_exceed_the_pool() {
        let config = Config::default().with_pool_size(4);
        assert_eq!(config.batch_leaders(), 2);
        assert_eq!(config.clone().with_max_batches(3).batch_leaders(), 3);
        assert_eq!(config.clone().with_max_batches(9).batch_leaders(), 4);
        assert_eq!(config.clone().with_max_batches(0).max_batches, 1);
        assert!(config.validate().is_ok());
        for (json, field) in [
            (r#"{"max_batch": 0}"#, "max_batch"),
            (r#"{"max_batches": 0}"#, "max_batches"),
        ] {
            let config: Config = serde_json::from_str(json).unwrap();
            let err = config.validate().unwrap_err();
            assert!(
                matches!(&err, Error::Config { message } if message.starts_with(field)),
                "{json}: {err:?}"
            );
        }
        let config: Config = serde_json::from_str(r#"{"max_batches": 3}"#).unwrap();
        assert_eq!(config.batch_leaders(), 3);
    }

    #[test]
    fn from_env_requires_the_variable() {
        // Only the error path: setting process-wide variables would race other tests.
        if std::env::var_os(DATABASE_URL_ENV).is_none() {
            assert!(matches!(Config::from_env(), Err(Error::Config { .. })));
        }
    }
}
