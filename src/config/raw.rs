//! The raw layer of the configuration: the TOML file plus `OMS_SYNC__*` environment overrides
//! (the environment last, so it wins), deserialised into shapes that reject unknown keys.
//! Nothing here checks a value; [`super::validate`] does.

use std::fmt;

use serde::Deserialize;

use super::{ConfigError, ENV_PREFIX};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub api: RawApi,
    #[serde(default)]
    pub warehouse: RawWarehouse,
    #[serde(default)]
    pub sync: RawSync,
    #[serde(default)]
    pub log: RawLog,
    #[serde(default)]
    pub metrics: RawMetrics,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApi {
    pub base_url: Option<String>,
    pub token: Option<String>,
    pub token_file: Option<String>,
    pub page_size: Option<i64>,
    pub timeout: Option<String>,
    pub max_retries: Option<i64>,
    pub retry_min_delay: Option<String>,
    pub retry_max_delay: Option<String>,
    pub allow_insecure_http: Option<bool>,
    pub max_requests_per_second: Option<f64>,
    pub concurrency: Option<i64>,
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
pub(super) struct RawWarehouse {
    pub path: Option<String>,
    pub url: Option<String>,
    pub password_file: Option<String>,
    pub schema: Option<String>,
    pub allow_insecure: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSync {
    pub interval: Option<String>,
    pub lookback: Option<String>,
    pub reconcile_every: Option<String>,
    pub keep_runs: Option<String>,
    pub streams: Option<Vec<String>>,
    pub history: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    pub level: Option<String>,
    pub format: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    pub listen: Option<String>,
}

/// Whether `env` holds any `OMS_SYNC__*` variable (then a config file is optional).
pub(super) fn has_env_keys(env: &[(String, String)]) -> bool {
    let prefix = format!("{ENV_PREFIX}__");
    env.iter().any(|(k, _)| k.starts_with(&prefix))
}

/// Parses TOML plus `OMS_SYNC__*` overrides into the raw shape (unknown keys rejected).
pub(super) fn raw_config(
    text: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<RawConfig, ConfigError> {
    let env_map: config::Map<String, String> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}__")))
        .collect();
    config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Toml))
        .add_source(
            config::Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                // OMS_SYNC__SYNC__STREAMS="customers,customer_addresses"; no other key is
                // split (a token or URL may hold a comma).
                .list_separator(",")
                .with_list_parse_key("sync.streams")
                .source(Some(env_map)),
        )
        .build()
        .and_then(|c| c.try_deserialize())
        .map_err(|e| ConfigError::Parse(scrub(&e.to_string())))
}

/// Config errors can quote values; a token must never be among them.
fn scrub(message: &str) -> String {
    if message.contains("token") && message.contains("invalid type") {
        return "`api.token` has the wrong type (expected a string)".to_string();
    }
    // One line: TOML parse errors come with a multi-line excerpt.
    crate::text::one_line(message)
}
