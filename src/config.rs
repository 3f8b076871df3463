//! Configuration: a TOML file, then `OMS_SYNC__SECTION__KEY` environment overrides (the
//! environment comes last, so it wins), deserialised into a raw shape that rejects unknown keys,
//! then validated into [`Config`] so nothing downstream re-checks a value.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use url::Url;

/// Environment prefix: `OMS_SYNC__API__TOKEN` sets `api.token`.
pub const ENV_PREFIX: &str = "OMS_SYNC";
pub const DEFAULT_PAGE_SIZE: u32 = 100;
/// The OMS caps `limit` silently anyway; larger asks only waste memory.
pub const MAX_PAGE_SIZE: u32 = 10_000;
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_RETRIES: u32 = 8;
pub const MAX_CONCURRENCY: u32 = 16;
/// `sync.lookback` when unset. A row becomes visible when its transaction commits, which can be
/// well after Django stamped its `modified_date` (ATOMIC_REQUESTS, long jobs, chunked updates).
/// Five minutes covers request transactions bounded by 30-60 s server timeouts with a wide
/// margin and most batch jobs; the price is re-reading (not re-writing) that window each pass.
pub const DEFAULT_LOOKBACK: Duration = Duration::from_secs(300);

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
        "config is invalid: {0}; fix: correct the key in the config file or its OMS_SYNC__ variable (see config/oms-sync.example.toml)"
    )]
    Parse(String),
    #[error("config key `{key}` is missing; fix: set it in the config file or as {env}")]
    Missing { key: &'static str, env: String },
    #[error("config key `{key}` {problem}; fix: {fix}")]
    Invalid {
        key: &'static str,
        problem: String,
        fix: String,
    },
}

impl ConfigError {
    fn invalid(key: &'static str, problem: impl Into<String>, fix: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key,
            problem: problem.into(),
            fix: fix.into(),
        }
    }
    fn missing(key: &'static str) -> Self {
        ConfigError::Missing {
            key,
            env: env_name(key),
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

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    api: RawApi,
    #[serde(default)]
    warehouse: RawWarehouse,
    #[serde(default)]
    sync: RawSync,
    #[serde(default)]
    log: RawLog,
    #[serde(default)]
    metrics: RawMetrics,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApi {
    base_url: Option<String>,
    token: Option<String>,
    token_file: Option<String>,
    page_size: Option<i64>,
    timeout: Option<String>,
    max_retries: Option<i64>,
    retry_min_delay: Option<String>,
    retry_max_delay: Option<String>,
    allow_insecure_http: Option<bool>,
    max_requests_per_second: Option<f64>,
    concurrency: Option<i64>,
}

// Hand-written so a token in the raw layer can never reach a log either.
impl fmt::Debug for RawApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawApi")
            .field("base_url", &self.base_url)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("token_file", &self.token_file)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWarehouse {
    path: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSync {
    interval: Option<String>,
    lookback: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    level: Option<String>,
    format: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: Option<String>,
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

#[derive(Debug, Clone)]
pub struct WarehouseConfig {
    pub path: PathBuf,
}

#[derive(Debug, Clone)]
pub struct SyncConfig {
    pub interval: Duration,
    pub lookback: Duration,
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

impl Config {
    /// Reads `path`, applies the process environment, validates.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Self::load_with_env(path, std::env::vars())
    }

    /// Like [`Config::load`] with an explicit environment (tests pass their own).
    pub fn load_with_env(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Self::from_toml_with_env(&text, env)
    }

    /// Parses TOML text plus environment overrides, then validates.
    pub fn from_toml_with_env(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let credentials_dir = std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from);
        validate(raw_config(text, env)?, credentials_dir.as_deref())
    }

    /// Only what the read-only `status` command needs: the warehouse path. The API section is
    /// not validated, so `status` works where the token is unreadable (for example outside the
    /// systemd unit that hands it over through `$CREDENTIALS_DIRECTORY`).
    pub fn load_warehouse(path: &Path) -> Result<WarehouseConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let raw = raw_config(&text, std::env::vars())?;
        validate_warehouse(raw.warehouse)
    }
}

/// Parses TOML plus `OMS_SYNC__*` overrides into the raw shape (unknown keys rejected).
fn raw_config(
    text: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<RawConfig, ConfigError> {
    let env_map: config::Map<String, String> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}__")))
        .collect();
    {
        let raw: RawConfig = config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .add_source(
                config::Environment::with_prefix(ENV_PREFIX)
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true)
                    .source(Some(env_map)),
            )
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(|e| ConfigError::Parse(scrub(&e.to_string())))?;
        Ok(raw)
    }
}

fn validate_warehouse(raw: RawWarehouse) -> Result<WarehouseConfig, ConfigError> {
    let path = raw
        .path
        .filter(|p| !p.trim().is_empty())
        .ok_or_else(|| ConfigError::missing("warehouse.path"))?;
    Ok(WarehouseConfig {
        path: PathBuf::from(path),
    })
}

/// Config errors can quote values; a token must never be among them.
fn scrub(message: &str) -> String {
    if message.contains("token") && message.contains("invalid type") {
        return "`api.token` has the wrong type (expected a string)".to_string();
    }
    // One line: TOML parse errors come with a multi-line excerpt.
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn validate(raw: RawConfig, credentials_dir: Option<&Path>) -> Result<Config, ConfigError> {
    let api = validate_api(raw.api, credentials_dir)?;
    let warehouse = validate_warehouse(raw.warehouse)?;
    let interval = parse_duration("sync.interval", raw.sync.interval.as_deref(), "60s")?;
    if interval.is_zero() {
        return Err(ConfigError::invalid(
            "sync.interval",
            "is zero",
            "use a positive duration such as \"60s\"",
        ));
    }
    let lookback = match raw.sync.lookback.as_deref() {
        None => DEFAULT_LOOKBACK,
        given => parse_duration("sync.lookback", given, "")?,
    };
    let level = raw.log.level.unwrap_or_else(|| "info".to_string());
    if tracing_subscriber::EnvFilter::try_new(&level).is_err() {
        return Err(ConfigError::invalid(
            "log.level",
            format!("is not a valid level or filter: {level:?}"),
            "use one of error, warn, info, debug, trace (or a RUST_LOG style filter)",
        ));
    }
    let format = match raw.log.format.as_deref().unwrap_or("text") {
        "text" => LogFormat::Text,
        "json" => LogFormat::Json,
        other => {
            return Err(ConfigError::invalid(
                "log.format",
                format!("is {other:?}"),
                "use \"text\" or \"json\"",
            ));
        }
    };
    let listen = match raw.metrics.listen.as_deref() {
        None | Some("") => None,
        Some(s) => Some(s.parse::<SocketAddr>().map_err(|_| {
            ConfigError::invalid(
                "metrics.listen",
                format!("is not an address:port: {s:?}"),
                "use for example \"127.0.0.1:9187\", or leave it out to disable metrics",
            )
        })?),
    };
    Ok(Config {
        api,
        warehouse,
        sync: SyncConfig { interval, lookback },
        log: LogConfig { level, format },
        metrics: MetricsConfig { listen },
    })
}

fn validate_api(raw: RawApi, credentials_dir: Option<&Path>) -> Result<ApiConfig, ConfigError> {
    let base = raw
        .base_url
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| ConfigError::missing("api.base_url"))?;
    let base_url = parse_base_url(&base, raw.allow_insecure_http.unwrap_or(false))?;
    let token = match (raw.token.filter(|t| !t.is_empty()), raw.token_file) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::invalid(
                "api.token",
                "is set together with api.token_file",
                "keep only one of them",
            ));
        }
        (Some(t), None) => t,
        (None, Some(file)) => read_token_file(&file, credentials_dir)?,
        (None, None) => return Err(ConfigError::missing("api.token")),
    };
    let token = token.trim().to_string();
    if token.is_empty() || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ConfigError::invalid(
            "api.token",
            "is empty or contains whitespace",
            "set the API key exactly as Akinon issued it",
        ));
    }
    let page_size = int_in(
        "api.page_size",
        raw.page_size,
        DEFAULT_PAGE_SIZE,
        1,
        MAX_PAGE_SIZE,
    )?;
    let timeout = parse_duration("api.timeout", raw.timeout.as_deref(), "30s")?;
    if timeout.is_zero() {
        return Err(ConfigError::invalid(
            "api.timeout",
            "is zero",
            "use a positive duration such as \"30s\"",
        ));
    }
    let max_retries = int_in(
        "api.max_retries",
        raw.max_retries,
        DEFAULT_MAX_RETRIES,
        0,
        100,
    )?;
    let retry_min_delay = parse_duration(
        "api.retry_min_delay",
        raw.retry_min_delay.as_deref(),
        "500ms",
    )?;
    let retry_max_delay =
        parse_duration("api.retry_max_delay", raw.retry_max_delay.as_deref(), "30s")?;
    if retry_max_delay < retry_min_delay {
        return Err(ConfigError::invalid(
            "api.retry_max_delay",
            "is shorter than api.retry_min_delay",
            "make it at least as long as api.retry_min_delay",
        ));
    }
    let max_requests_per_second = match raw.max_requests_per_second {
        None => None,
        Some(r) if r.is_finite() && r > 0.0 => Some(r),
        Some(r) => {
            return Err(ConfigError::invalid(
                "api.max_requests_per_second",
                format!("is {r}"),
                "use a positive number, or leave it out for no limit",
            ));
        }
    };
    let concurrency = int_in("api.concurrency", raw.concurrency, 1, 1, MAX_CONCURRENCY)?;
    Ok(ApiConfig {
        base_url,
        token: Secret::new(token),
        page_size,
        timeout,
        max_retries,
        retry_min_delay,
        retry_max_delay,
        max_requests_per_second,
        concurrency,
    })
}

/// Accepts `scheme://host[:port]` only; https unless loopback or explicitly allowed.
pub fn parse_base_url(s: &str, allow_insecure_http: bool) -> Result<Url, ConfigError> {
    const KEY: &str = "api.base_url";
    let url = Url::parse(s.trim()).map_err(|e| {
        ConfigError::invalid(
            KEY,
            format!("is not a URL ({e}): {s:?}"),
            "write it as https://your-oms-host (scheme and host, no path)",
        )
    })?;
    if url.scheme() != "https" && url.scheme() != "http" {
        return Err(ConfigError::invalid(
            KEY,
            format!("has scheme {:?}", url.scheme()),
            "use https://your-oms-host",
        ));
    }
    let Some(host) = url.host_str() else {
        return Err(ConfigError::invalid(
            KEY,
            "has no host",
            "write it as https://your-oms-host",
        ));
    };
    if !(url.path() == "/" || url.path().is_empty()) || url.query().is_some() {
        return Err(ConfigError::invalid(
            KEY,
            format!("has a path or query ({:?})", url.path()),
            "give only scheme://host[:port]; the endpoint path is fixed",
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ConfigError::invalid(
            KEY,
            "contains credentials",
            "put the token in api.token or api.token_file, not in the URL",
        ));
    }
    if url.scheme() == "http" && !allow_insecure_http && !is_loopback(host) {
        return Err(ConfigError::invalid(
            KEY,
            "uses plain http to a non-loopback host, which would send the token unencrypted",
            "use https, or set api.allow_insecure_http = true if you really mean it",
        ));
    }
    Ok(url)
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

/// Reads a token file; `$CREDENTIALS_DIRECTORY/name` (systemd `LoadCredential=`) is expanded.
fn read_token_file(file: &str, credentials_dir: Option<&Path>) -> Result<String, ConfigError> {
    const KEY: &str = "api.token_file";
    let path = match file
        .strip_prefix("$CREDENTIALS_DIRECTORY/")
        .or_else(|| file.strip_prefix("${CREDENTIALS_DIRECTORY}/"))
    {
        Some(rest) => match credentials_dir {
            Some(dir) => dir.join(rest),
            None => {
                return Err(ConfigError::invalid(
                    KEY,
                    "refers to $CREDENTIALS_DIRECTORY, which is not set",
                    "run under systemd with LoadCredential=, or give an absolute path",
                ));
            }
        },
        None => PathBuf::from(file),
    };
    std::fs::read_to_string(&path).map_err(|e| {
        ConfigError::invalid(
            KEY,
            format!("cannot be read ({}: {e})", path.display()),
            "point it at a readable file that holds only the token",
        )
    })
}

fn int_in(
    key: &'static str,
    v: Option<i64>,
    default: u32,
    min: u32,
    max: u32,
) -> Result<u32, ConfigError> {
    let Some(v) = v else { return Ok(default) };
    if v < i64::from(min) || v > i64::from(max) {
        return Err(ConfigError::invalid(
            key,
            format!("is {v}"),
            format!("use a whole number from {min} to {max}"),
        ));
    }
    Ok(v as u32)
}

fn parse_duration(
    key: &'static str,
    v: Option<&str>,
    default: &str,
) -> Result<Duration, ConfigError> {
    let s = v.unwrap_or(default);
    humantime::parse_duration(s.trim()).map_err(|e| {
        ConfigError::invalid(
            key,
            format!("is not a duration ({e}): {s:?}"),
            "write it like \"60s\", \"5m\" or \"1h 30m\"",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_toml_with_env(
            text,
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    const MINIMAL: &str = r#"
        [api]
        base_url = "https://oms.example.com"
        token = "abc123"
        [warehouse]
        path = "/tmp/x.db"
    "#;

    #[test]
    fn defaults_apply() {
        let c = load(MINIMAL, &[]).unwrap();
        assert_eq!(c.api.page_size, DEFAULT_PAGE_SIZE);
        assert_eq!(c.sync.interval, Duration::from_secs(60));
        assert_eq!(c.sync.lookback, DEFAULT_LOOKBACK);
        assert!(!DEFAULT_LOOKBACK.is_zero());
        assert_eq!(c.log.format, LogFormat::Text);
        assert!(c.metrics.listen.is_none());
    }

    #[test]
    fn environment_overrides_file() {
        let c = load(
            MINIMAL,
            &[
                ("OMS_SYNC__API__TOKEN", "from-env"),
                ("OMS_SYNC__API__PAGE_SIZE", "250"),
                ("OMS_SYNC__SYNC__LOOKBACK", "7m"),
            ],
        )
        .unwrap();
        assert_eq!(c.api.token.expose(), "from-env");
        assert_eq!(c.api.page_size, 250);
        assert_eq!(c.sync.lookback, Duration::from_secs(420));
    }

    #[test]
    fn numeric_token_from_env_stays_a_string() {
        let c = load(MINIMAL, &[("OMS_SYNC__API__TOKEN", "12345")]).unwrap();
        assert_eq!(c.api.token.expose(), "12345");
    }

    #[test]
    fn token_is_never_in_debug() {
        let c = load(MINIMAL, &[]).unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("abc123"), "{dbg}");
        assert!(dbg.contains("***"));
    }

    #[test]
    fn errors_name_the_key() {
        let cases: &[(&str, &str)] = &[
            ("[warehouse]\npath=\"x\"", "api.base_url"),
            (
                "[api]\nbase_url=\"https://h\"\n[warehouse]\npath=\"x\"",
                "api.token",
            ),
            (
                "[api]\nbase_url=\"oms.example.com\"\ntoken=\"t\"\n[warehouse]\npath=\"x\"",
                "api.base_url",
            ),
            (
                "[api]\nbase_url=\"http://oms.example.com\"\ntoken=\"t\"\n[warehouse]\npath=\"x\"",
                "api.base_url",
            ),
            (
                "[api]\nbase_url=\"https://h/api/v1\"\ntoken=\"t\"\n[warehouse]\npath=\"x\"",
                "api.base_url",
            ),
            (
                "[api]\nbase_url=\"https://h\"\ntoken=\"t\"\npage_size=0\n[warehouse]\npath=\"x\"",
                "api.page_size",
            ),
            (
                "[api]\nbase_url=\"https://h\"\ntoken=\"t\"\n[warehouse]\npath=\"x\"\n[sync]\ninterval=\"soon\"",
                "sync.interval",
            ),
            ("[api]\nbase_url=\"https://h\"\ntoken=\"t\"\n[api]", "api"),
            (
                "[api]\nbase_url=\"https://h\"\ntoken=\"t\"\npagesize=3\n[warehouse]\npath=\"x\"",
                "pagesize",
            ),
            (
                "[api]\nbase_url=\"https://h\"\ntoken=\"t\"\n[warehouse]\npath=\"x\"\n[log]\nformat=\"xml\"",
                "log.format",
            ),
            (
                "[api]\nbase_url=\"https://h\"\ntoken_file=\"/nonexistent/token\"\n[warehouse]\npath=\"x\"",
                "api.token_file",
            ),
        ];
        for (text, key) in cases {
            let err = load(text, &[]).expect_err(text).to_string();
            assert!(
                err.contains(key),
                "{text:?} gave {err:?}, expected it to name {key}"
            );
            assert!(err.contains("fix"), "{err}");
        }
    }

    #[test]
    fn loopback_http_is_allowed_and_insecure_needs_opt_in() {
        assert!(parse_base_url("http://127.0.0.1:8080", false).is_ok());
        assert!(parse_base_url("http://localhost:8080/", false).is_ok());
        assert!(parse_base_url("http://[::1]:8080", false).is_ok());
        assert!(parse_base_url("http://oms.internal", false).is_err());
        assert!(parse_base_url("http://oms.internal", true).is_ok());
    }

    #[test]
    fn token_file_is_read_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("token");
        std::fs::write(&f, "secret-from-file\n").unwrap();
        let text = format!(
            "[api]\nbase_url=\"https://h\"\ntoken_file={:?}\n[warehouse]\npath=\"x\"",
            f.display().to_string()
        );
        let c = load(&text, &[]).unwrap();
        assert_eq!(c.api.token.expose(), "secret-from-file");
    }

    #[test]
    fn credentials_directory_is_expanded() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("oms-token"), "cred-token").unwrap();
        let raw = RawApi {
            base_url: Some("https://h".into()),
            token_file: Some("$CREDENTIALS_DIRECTORY/oms-token".into()),
            ..RawApi::default()
        };
        let api = validate_api(raw, Some(dir.path())).unwrap();
        assert_eq!(api.token.expose(), "cred-token");
    }
}

#[cfg(test)]
mod type_errors {
    use super::*;

    #[test]
    fn wrong_types_name_the_key_and_never_echo_a_token() {
        let base = "[api]\nbase_url=\"https://h\"\n[warehouse]\npath=\"x\"\n";
        for (extra_api, key) in [
            ("token = \"t\"\npage_size = \"many\"", "page_size"),
            (
                "token = \"t\"\nallow_insecure_http = \"maybe\"",
                "allow_insecure_http",
            ),
            ("token = \"t\"\ntimeout = 30", "timeout"),
            ("token = [\"secret-in-list\"]", "token"),
        ] {
            let text = base.replace("[api]\n", &format!("[api]\n{extra_api}\n"));
            let err = Config::from_toml_with_env(&text, std::iter::empty())
                .map(|_| ())
                .expect_err(extra_api)
                .to_string();
            assert!(err.contains(key), "{extra_api}: {err}");
            assert!(!err.contains("secret-in-list"), "{err}");
        }
    }
}
