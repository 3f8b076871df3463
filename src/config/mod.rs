//! Configuration: an optional TOML file, then `OMS_SYNC__SECTION__KEY` environment overrides
//! (the environment comes last, so it wins), deserialised into a raw shape that rejects unknown
//! keys ([`raw`]), then validated into [`Config`] ([`validate`]) so nothing downstream
//! re-checks a value. Without a file every key comes from the environment.

mod raw;
mod validate;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use url::Url;

use validate::Origin;

use crate::warehouse::WarehouseError;
use crate::warehouse::postgres::PgConfig;
pub use validate::parse_base_url;

/// Environment prefix: `OMS_SYNC__API__TOKEN` sets `api.token`.
pub const ENV_PREFIX: &str = "OMS_SYNC";
pub const DEFAULT_PAGE_SIZE: u32 = 100;
/// The OMS caps `limit` silently anyway; larger asks only waste memory.
pub const MAX_PAGE_SIZE: u32 = 10_000;
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_RETRIES: u32 = 8;
pub const DEFAULT_RETRY_MIN_DELAY: Duration = Duration::from_millis(500);
pub const DEFAULT_RETRY_MAX_DELAY: Duration = Duration::from_secs(30);
/// 8: see docs/performance.md, "Remote OMS" (benches/remote.rs).
pub const DEFAULT_CONCURRENCY: u32 = 8;
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
pub const MAX_CONCURRENCY: u32 = 16;
/// `sync.lookback` when unset. A row becomes visible when its transaction commits, which can be
/// well after Django stamped its `modified_date` (ATOMIC_REQUESTS, long jobs, chunked updates).
/// Five minutes covers request transactions bounded by 30-60 s server timeouts with a wide
/// margin and most batch jobs; the price is re-reading (not re-writing) that window each pass.
pub const DEFAULT_LOOKBACK: Duration = Duration::from_secs(300);
/// `sync.reconcile_every` when unset: the daemon's full pass by id (finds deletions) once a
/// week, as the weekly backfill timer did.
pub const DEFAULT_RECONCILE_EVERY: Duration = Duration::from_secs(7 * 24 * 3600);
/// `sync.keep_runs` when unset: a quarter of run history (~130k rows at a 60 s interval),
/// enough to compare passes over weeks, with the reconciliation's weekly runs far inside it.
pub const DEFAULT_KEEP_RUNS: Duration = Duration::from_secs(90 * 24 * 3600);

/// A secret string (the API token). Its `Debug` and `Display` never show the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The only way to read the value: call sites are easy to audit.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Why the configuration cannot be used. Every message names the key or file and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "cannot read config file {path}: {reason}; fix: pass an existing TOML file with --config"
    )]
    File { path: PathBuf, reason: String },
    #[error(
        "no configuration: neither --config FILE nor any OMS_SYNC__* variable; fix: pass --config FILE (see config/oms-sync.example.toml), or set OMS_SYNC__API__BASE_URL, OMS_SYNC__API__TOKEN and OMS_SYNC__WAREHOUSE__PATH"
    )]
    Nothing,
    #[error(
        "config is invalid: {0}; fix: correct the key in the config file or its OMS_SYNC__ variable (see config/oms-sync.example.toml)"
    )]
    Parse(String),
    #[error("config key `{key}` is missing; fix: {fix}")]
    Missing { key: &'static str, fix: String },
    #[error("config key `{key}` {problem}; fix: {fix}")]
    Invalid {
        key: &'static str,
        problem: String,
        fix: String,
    },
}

/// Takes `schema=NAME` out of a URL's query (a `--db` convenience; the config has
/// `warehouse.schema`).
fn split_schema_param(url: &str) -> (String, Option<String>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_string(), None);
    };
    let mut schema = None;
    let rest: Vec<&str> = query
        .split('&')
        .filter(|kv| match kv.strip_prefix("schema=") {
            Some(v) => {
                schema = Some(v.to_string());
                false
            }
            None => true,
        })
        .collect();
    let url = if rest.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    (url, schema)
}

impl ConfigError {
    /// A PostgreSQL setting rejected by its parser, as the configuration error it is (exit 2).
    fn from_warehouse(e: WarehouseError) -> Self {
        match e {
            WarehouseError::Config { key, reason, fix } => ConfigError::Invalid {
                key,
                problem: reason,
                fix: fix.into(),
            },
            other => ConfigError::Parse(other.to_string()),
        }
    }

    fn invalid(key: &'static str, problem: impl Into<String>, fix: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key,
            problem: problem.into(),
            fix: fix.into(),
        }
    }
}

/// `api.token` -> `OMS_SYNC__API__TOKEN`.
pub fn env_name(key: &str) -> String {
    format!(
        "{ENV_PREFIX}__{}",
        key.replace('.', "__").to_ascii_uppercase()
    )
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub api: ApiConfig,
    pub warehouse: WarehouseConfig,
    pub sync: SyncConfig,
    pub log: LogConfig,
    pub metrics: MetricsConfig,
}

#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// scheme://host[:port], no path: endpoint paths are fixed by the resource.
    pub base_url: Url,
    pub token: Secret,
    pub page_size: u32,
    pub timeout: Duration,
    /// Retries of one request before the pass fails (the retry budget).
    pub max_retries: u32,
    /// First backoff delay; it doubles (with jitter) up to `retry_max_delay`.
    pub retry_min_delay: Duration,
    pub retry_max_delay: Duration,
    pub max_requests_per_second: Option<f64>,
    /// Parallel id ranges during a backfill.
    pub concurrency: u32,
}

impl ApiConfig {
    /// The API at `base_url` with every other key at its default, as a config file with only
    /// `base_url` and `token` would give (the demo, tests and benchmarks start from it).
    pub fn new(base_url: Url, token: Secret) -> ApiConfig {
        ApiConfig {
            base_url,
            token,
            page_size: DEFAULT_PAGE_SIZE,
            timeout: DEFAULT_TIMEOUT,
            max_retries: DEFAULT_MAX_RETRIES,
            retry_min_delay: DEFAULT_RETRY_MIN_DELAY,
            retry_max_delay: DEFAULT_RETRY_MAX_DELAY,
            max_requests_per_second: None,
            concurrency: DEFAULT_CONCURRENCY,
        }
    }
}

/// Where the warehouse is: a SQLite file (`warehouse.path`) or a PostgreSQL database
/// (`warehouse.url`); the password never shows in `Debug`.
#[derive(Debug, Clone)]
pub enum WarehouseConfig {
    Sqlite { path: PathBuf },
    Postgres(PgConfig),
}

impl WarehouseConfig {
    /// A `--db` argument: a `postgresql://` URL (password from the URL, TLS rules as in the
    /// config; `schema=NAME` among its parameters picks the schema, default `public`) or a
    /// SQLite file path.
    pub fn from_db_arg(arg: &str) -> Result<WarehouseConfig, ConfigError> {
        if arg.starts_with("postgresql://") || arg.starts_with("postgres://") {
            let (url, schema) = split_schema_param(arg);
            PgConfig::parse(&url, None, schema.as_deref(), false)
                .map(WarehouseConfig::Postgres)
                .map_err(ConfigError::from_warehouse)
        } else {
            Ok(WarehouseConfig::Sqlite {
                path: PathBuf::from(arg),
            })
        }
    }
}

#[derive(Debug, Clone)]
pub struct SyncConfig {
    pub interval: Duration,
    pub lookback: Duration,
    /// How long after the last finished backfill the daemon starts the next one, run in slices
    /// between its incremental passes; zero: never (the daemon only runs incremental passes).
    pub reconcile_every: Duration,
    /// How long `sync_runs` keeps a run (the rows `status` and the scheduler read are kept
    /// whatever their age); zero: forever.
    pub keep_runs: Duration,
    /// The streams every tick, `--once` and `--backfill` run, in this order (`sync.streams`;
    /// default customers alone).
    pub streams: Vec<crate::stream::Stream>,
    /// History mode: every version of every customer in `customers_history` (off by default).
    pub history: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub level: String,
    pub format: LogFormat,
}

#[derive(Debug, Clone, Default)]
pub struct MetricsConfig {
    pub listen: Option<SocketAddr>,
}

/// The file's text ("" without a file), or why there is no configuration at all.
fn source_text(path: Option<&Path>, env: &[(String, String)]) -> Result<String, ConfigError> {
    match path {
        Some(path) => std::fs::read_to_string(path).map_err(|e| ConfigError::File {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }),
        None if raw::has_env_keys(env) => Ok(String::new()),
        None => Err(ConfigError::Nothing),
    }
}

impl Config {
    /// Reads `path` (if any), applies the process environment, validates.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        Self::load_with_env(path, std::env::vars())
    }

    /// Like [`Config::load`] with an explicit environment (tests pass their own).
    pub fn load_with_env(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = env.into_iter().collect();
        let text = source_text(path, &env)?;
        Self::from_parts(&text, env, path.is_some())
    }

    /// Parses TOML text plus environment overrides, then validates.
    pub fn from_toml_with_env(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        Self::from_parts(text, env, true)
    }

    fn from_parts(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
        has_file: bool,
    ) -> Result<Config, ConfigError> {
        let credentials_dir = std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from);
        let origin = Origin {
            has_file,
            credentials_dir: credentials_dir.as_deref(),
        };
        validate::validate(raw::raw_config(text, env)?, origin)
    }

    /// Only what the read-only `status` command needs: the warehouse path. The API section is
    /// not validated, so `status` works where the token is unreadable (for example outside the
    /// systemd unit that hands it over through `$CREDENTIALS_DIRECTORY`).
    pub fn load_warehouse(path: Option<&Path>) -> Result<WarehouseConfig, ConfigError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        let text = source_text(path, &env)?;
        let raw = raw::raw_config(&text, env)?;
        let origin = Origin {
            has_file: path.is_some(),
            credentials_dir: None,
        };
        validate::validate_warehouse(raw.warehouse, origin)
    }
}

/// `log.format` as the file and the environment give it, read leniently (unknown keys and
/// other sections' mistakes ignored), so a configuration error can be reported in the format
/// the configuration asked for. None when it cannot be read.
pub fn peek_log_format(path: Option<&Path>) -> Option<LogFormat> {
    let text = match path {
        Some(p) => std::fs::read_to_string(p).ok()?,
        None => String::new(),
    };
    let env: config::Map<String, String> = std::env::vars()
        .filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}__")))
        .collect();
    let format = config::Config::builder()
        .add_source(config::File::from_str(&text, config::FileFormat::Toml))
        .add_source(
            config::Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("__")
                .separator("__")
                .source(Some(env)),
        )
        .build()
        .ok()?
        .get_string("log.format")
        .ok()?;
    match format.as_str() {
        "json" => Some(LogFormat::Json),
        "text" => Some(LogFormat::Text),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
