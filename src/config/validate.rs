//! Validation: turns the raw layer into the checked [`Config`] (URLs parsed, durations and
//! ranges checked, the token read), so nothing downstream re-checks a value. Every error names
//! the key and the fix.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use url::Url;

use super::raw::{RawApi, RawConfig, RawWarehouse};
use super::{
    ApiConfig, Config, ConfigError, DEFAULT_CONCURRENCY, DEFAULT_INTERVAL, DEFAULT_KEEP_RUNS,
    DEFAULT_LOOKBACK, DEFAULT_MAX_RETRIES, DEFAULT_PAGE_SIZE, DEFAULT_RECONCILE_EVERY,
    DEFAULT_RETRY_MAX_DELAY, DEFAULT_RETRY_MIN_DELAY, DEFAULT_TIMEOUT, LogConfig, LogFormat,
    MAX_CONCURRENCY, MAX_PAGE_SIZE, MetricsConfig, Secret, SyncConfig, WarehouseConfig, env_name,
};
use crate::stream::Stream;
use crate::warehouse::postgres::PgConfig;

/// Where the values came from, for errors that say where to fix them.
#[derive(Debug, Clone, Copy)]
pub(super) struct Origin<'a> {
    /// A config file was given (otherwise only the environment).
    pub has_file: bool,
    /// `$CREDENTIALS_DIRECTORY` (systemd `LoadCredential=`), for `api.token_file`.
    pub credentials_dir: Option<&'a Path>,
}

impl Origin<'_> {
    fn missing(&self, key: &'static str) -> ConfigError {
        ConfigError::Missing {
            key,
            fix: self.missing_fix(key),
        }
    }

    fn missing_fix(&self, key: &'static str) -> String {
        if self.has_file {
            format!("set it in the config file or as {}", env_name(key))
        } else {
            format!("pass --config FILE, or set {}", env_name(key))
        }
    }

    fn missing_token(&self) -> ConfigError {
        let (t, f) = (env_name("api.token"), env_name("api.token_file"));
        let fix = if self.has_file {
            format!("set api.token or api.token_file in the config file, or {t} or {f}")
        } else {
            format!("pass --config FILE with api.token or api.token_file, or set {t} or {f}")
        };
        ConfigError::Missing {
            key: "api.token",
            fix,
        }
    }
}

/// Levels `log.level` accepts, alone or as `target=level`.
const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

pub(super) fn validate(raw: RawConfig, origin: Origin<'_>) -> Result<Config, ConfigError> {
    let api = validate_api(raw.api, origin)?;
    let warehouse = validate_warehouse(raw.warehouse, origin)?;
    let interval = parse_duration(
        "sync.interval",
        raw.sync.interval.as_deref(),
        DEFAULT_INTERVAL,
    )?;
    if interval.is_zero() {
        return Err(ConfigError::invalid(
            "sync.interval",
            "is zero",
            "use a positive duration such as \"60s\"",
        ));
    }
    let lookback = parse_duration(
        "sync.lookback",
        raw.sync.lookback.as_deref(),
        DEFAULT_LOOKBACK,
    )?;
    let reconcile_every = parse_duration(
        "sync.reconcile_every",
        raw.sync.reconcile_every.as_deref(),
        DEFAULT_RECONCILE_EVERY,
    )?;
    let keep_runs = parse_duration(
        "sync.keep_runs",
        raw.sync.keep_runs.as_deref(),
        DEFAULT_KEEP_RUNS,
    )?;
    let streams = validate_streams(raw.sync.streams)?;
    let level = validate_level(raw.log.level)?;
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
        sync: SyncConfig {
            interval,
            lookback,
            reconcile_every,
            keep_runs,
            streams,
            history: raw.sync.history.unwrap_or(false),
        },
        log: LogConfig { level, format },
        metrics: MetricsConfig { listen },
    })
}

/// `sync.streams`: known names, each once, at least one.
fn validate_streams(names: Option<Vec<String>>) -> Result<Vec<Stream>, ConfigError> {
    let Some(names) = names else {
        return Ok(Stream::DEFAULT.to_vec());
    };
    let mut streams = Vec::new();
    for name in names.iter().map(|n| n.trim()) {
        let stream = Stream::from_name(name).ok_or_else(|| {
            ConfigError::invalid(
                "sync.streams",
                format!("names an unknown stream {name:?}"),
                format!("use some of: {}", Stream::names()),
            )
        })?;
        if streams.contains(&stream) {
            return Err(ConfigError::invalid(
                "sync.streams",
                format!("names {name:?} twice"),
                "list each stream once",
            ));
        }
        streams.push(stream);
    }
    if streams.is_empty() {
        return Err(ConfigError::invalid(
            "sync.streams",
            "is empty",
            format!(
                "list at least one of: {} (or leave the key out for customers)",
                Stream::names()
            ),
        ));
    }
    Ok(streams)
}

/// A level, or a filter whose every directive ends in `=level`. A bare word that is not a
/// level would parse as a target name and silently filter out every event (`"eror"`).
fn validate_level(level: Option<String>) -> Result<String, ConfigError> {
    let level = level.unwrap_or_else(|| "info".to_string());
    let ok_level = |s: &str| LEVELS.iter().any(|l| l.eq_ignore_ascii_case(s.trim()));
    let directives_ok = !level.trim().is_empty()
        && level.split(',').all(|d| match d.rsplit_once('=') {
            Some((target, lvl)) => !target.trim().is_empty() && ok_level(lvl),
            None => ok_level(d),
        });
    if !directives_ok || tracing_subscriber::EnvFilter::try_new(&level).is_err() {
        return Err(ConfigError::invalid(
            "log.level",
            format!("is not a level or filter: {level:?}"),
            "use one of error, warn, info, debug, trace, or a filter like \"oms_sync=debug,info\"",
        ));
    }
    Ok(level)
}

pub(super) fn validate_warehouse(
    raw: RawWarehouse,
    origin: Origin<'_>,
) -> Result<WarehouseConfig, ConfigError> {
    let path = raw.path.filter(|p| !p.trim().is_empty());
    let url = raw.url.filter(|u| !u.trim().is_empty());
    match (path, url) {
        (Some(_), Some(_)) => Err(ConfigError::invalid(
            "warehouse.path",
            "is set together with warehouse.url",
            "keep one: warehouse.path for a SQLite file, or warehouse.url for PostgreSQL",
        )),
        (None, None) => Err(ConfigError::Missing {
            key: "warehouse.path",
            fix: format!(
                "{} (a SQLite file), or warehouse.url / {} (PostgreSQL)",
                origin.missing_fix("warehouse.path"),
                env_name("warehouse.url")
            ),
        }),
        (Some(path), None) => {
            for (key, set) in [
                ("warehouse.password_file", raw.password_file.is_some()),
                ("warehouse.schema", raw.schema.is_some()),
                ("warehouse.allow_insecure", raw.allow_insecure.is_some()),
            ] {
                if set {
                    return Err(ConfigError::invalid(
                        key,
                        "applies to a PostgreSQL warehouse only",
                        "remove it, or use warehouse.url instead of warehouse.path",
                    ));
                }
            }
            Ok(WarehouseConfig::Sqlite {
                path: PathBuf::from(path),
            })
        }
        (None, Some(url)) => PgConfig::parse_in(
            &url,
            raw.password_file.as_deref(),
            raw.schema.as_deref(),
            raw.allow_insecure.unwrap_or(false),
            origin.credentials_dir,
        )
        .map(WarehouseConfig::Postgres)
        .map_err(ConfigError::from_warehouse),
    }
}

pub(super) fn validate_api(raw: RawApi, origin: Origin<'_>) -> Result<ApiConfig, ConfigError> {
    let base = raw
        .base_url
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| origin.missing("api.base_url"))?;
    let base_url = parse_base_url(&base, raw.allow_insecure_http.unwrap_or(false))?;
    // The key the token came from, so a bad token names the key to fix.
    let (key, token): (&'static str, String) =
        match (raw.token.filter(|t| !t.is_empty()), raw.token_file) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::invalid(
                    "api.token",
                    "is set together with api.token_file",
                    "keep only one of them",
                ));
            }
            (Some(t), None) => ("api.token", t),
            (None, Some(file)) => ("api.token_file", read_token_file(&file, origin)?),
            (None, None) => return Err(origin.missing_token()),
        };
    let token = token.trim().to_string();
    if token.is_empty() {
        return Err(ConfigError::invalid(
            key,
            if key == "api.token_file" {
                "names a file that holds no token (it is empty)"
            } else {
                "is empty"
            },
            "put the API key exactly as Akinon issued it there",
        ));
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ConfigError::invalid(
            key,
            "holds a token with whitespace or control characters inside",
            "keep only the API key exactly as Akinon issued it",
        ));
    }
    let page_size = int_in(
        "api.page_size",
        raw.page_size,
        DEFAULT_PAGE_SIZE,
        1,
        MAX_PAGE_SIZE,
    )?;
    let timeout = parse_duration("api.timeout", raw.timeout.as_deref(), DEFAULT_TIMEOUT)?;
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
        DEFAULT_RETRY_MIN_DELAY,
    )?;
    let retry_max_delay = parse_duration(
        "api.retry_max_delay",
        raw.retry_max_delay.as_deref(),
        DEFAULT_RETRY_MAX_DELAY,
    )?;
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
    let concurrency = int_in(
        "api.concurrency",
        raw.concurrency,
        DEFAULT_CONCURRENCY,
        1,
        MAX_CONCURRENCY,
    )?;
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
fn read_token_file(file: &str, origin: Origin<'_>) -> Result<String, ConfigError> {
    const KEY: &str = "api.token_file";
    let path = match file
        .strip_prefix("$CREDENTIALS_DIRECTORY/")
        .or_else(|| file.strip_prefix("${CREDENTIALS_DIRECTORY}/"))
    {
        Some(rest) => match origin.credentials_dir {
            Some(dir) => dir.join(rest),
            None => {
                return Err(ConfigError::invalid(
                    KEY,
                    "refers to $CREDENTIALS_DIRECTORY, which only the systemd units set",
                    "by hand, run as root: systemd-run --pipe --wait -p User=oms-sync -p LoadCredential=oms-token:/etc/oms-sync/token oms-sync --config FILE check; or, as a user who may read the token, set OMS_SYNC__API__TOKEN_FILE=/etc/oms-sync/token",
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
    default: Duration,
) -> Result<Duration, ConfigError> {
    let Some(s) = v else {
        return Ok(default);
    };
    humantime::parse_duration(s.trim()).map_err(|e| {
        ConfigError::invalid(
            key,
            format!("is not a duration ({e}): {s:?}"),
            "write it like \"60s\", \"5m\" or \"1h 30m\"",
        )
    })
}
