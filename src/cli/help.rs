//! The text after `oms-sync --help`: where the config file usually lives and the keys most
//! setups touch, with defaults taken from the constants the config loader uses (so the help
//! cannot drift from what an unset key means).

use std::time::Duration;

use crate::config::{
    DEFAULT_CONCURRENCY, DEFAULT_INTERVAL, DEFAULT_KEEP_RUNS, DEFAULT_LOOKBACK, DEFAULT_PAGE_SIZE,
    DEFAULT_RECONCILE_EVERY, ENV_PREFIX,
};

/// The packaged configuration, the one the systemd units pass with `--config`.
pub const PACKAGED_CONFIG: &str = "/etc/oms-sync/oms-sync.toml";
/// The commented example of every key, as the package installs it.
pub const PACKAGED_EXAMPLE: &str = "/usr/share/doc/oms-sync/oms-sync.example.toml";

/// `(key, default or "", meaning)` of the keys the long help lists.
pub fn main_keys() -> Vec<(&'static str, String, &'static str)> {
    let d = |d: Duration| format!("\"{}\"", spell(d));
    vec![
        (
            "api.base_url",
            String::new(),
            "scheme://host[:port] of the OMS (required)",
        ),
        (
            "api.token_file",
            String::new(),
            "file holding only the API key, or api.token (one is required)",
        ),
        (
            "warehouse.path",
            String::new(),
            "the SQLite file; or warehouse.url = \"postgresql://...\"",
        ),
        (
            "sync.interval",
            d(DEFAULT_INTERVAL),
            "time between daemon passes",
        ),
        (
            "sync.lookback",
            d(DEFAULT_LOOKBACK),
            "window re-read behind the mark each pass",
        ),
        (
            "sync.reconcile_every",
            d(DEFAULT_RECONCILE_EVERY),
            "the daemon's backfill (finds deletions) this long after the last; \"0s\": off",
        ),
        (
            "sync.keep_runs",
            d(DEFAULT_KEEP_RUNS),
            "how long sync_runs keeps a run; \"0s\": forever",
        ),
        (
            "sync.streams",
            "[\"customers\"]".into(),
            "streams to sync: customers, stock_locations, customer_addresses",
        ),
        (
            "sync.history",
            "false".into(),
            "keep every version of every customer in customers_history",
        ),
        (
            "api.page_size",
            DEFAULT_PAGE_SIZE.to_string(),
            "rows per request",
        ),
        (
            "api.concurrency",
            DEFAULT_CONCURRENCY.to_string(),
            "parallel id ranges during --backfill",
        ),
        (
            "log.level",
            "\"info\"".into(),
            "off, error ... trace, or a filter",
        ),
        ("log.format", "\"text\"".into(), "text or json"),
        (
            "metrics.listen",
            String::new(),
            "e.g. \"127.0.0.1:9187\": Prometheus /metrics (off when unset)",
        ),
    ]
}

/// A whole-second default as the README and the example config write it: "60s", "5m", "7d".
fn spell(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 86_400 && secs.is_multiple_of(86_400) && d.subsec_nanos() == 0 {
        format!("{}d", secs / 86_400)
    } else if secs >= 3600 && secs.is_multiple_of(3600) && d.subsec_nanos() == 0 {
        format!("{}h", secs / 3600)
    } else if secs >= 300 && secs.is_multiple_of(60) {
        format!("{}m", secs / 60)
    } else if d.subsec_nanos() == 0 {
        format!("{secs}s")
    } else {
        humantime::format_duration(d).to_string()
    }
}

/// The long help's closing text.
pub fn after_long_help() -> String {
    let mut s = String::from(
        "Without --once, --backfill or a command, runs as a daemon: one incremental pass every \
         sync.interval until SIGTERM/SIGINT.\n\n",
    );
    s.push_str(&format!(
        "Configuration file (TOML): the one --config names; nothing is read implicitly.\n  \
         {PACKAGED_CONFIG:<46} the package's, passed by the systemd units\n  \
         {PACKAGED_EXAMPLE:<46} every key, commented (config/oms-sync.example.toml in the source)\n\
         {ENV_PREFIX}__SECTION__KEY variables (e.g. {ENV_PREFIX}__API__TOKEN_FILE) override the file; \
         without --config every key comes from them. Unknown keys are errors.\n\n\
         Main keys (default):\n"
    ));
    for (key, default, meaning) in main_keys() {
        let default = if default.is_empty() {
            String::new()
        } else {
            format!(" ({default})")
        };
        s.push_str(&format!("  {key:<20} {meaning}{default}\n"));
    }
    s.push_str("All keys: /usr/share/doc/oms-sync/README.md, section \"Configuration\".");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's configuration table is the full list: every key the help calls main must
    /// be in it, with the same default.
    #[test]
    fn main_keys_and_defaults_agree_with_the_readme_table() {
        let readme = include_str!("../../README.md");
        for (key, default, _) in main_keys() {
            let row = readme
                .lines()
                .find(|l| l.starts_with(&format!("| `{key}` |")))
                .unwrap_or_else(|| panic!("README's configuration table lacks `{key}`"));
            if default.is_empty() {
                continue;
            }
            let readme_default = row
                .split('|')
                .nth(2)
                .map(|c| c.trim().trim_matches('`'))
                .unwrap_or_default();
            // Durations may be spelt differently ("1m", "60s"): compare what they mean.
            let as_duration = |v: &str| humantime::parse_duration(v.trim_matches('"')).ok();
            match (as_duration(&default), as_duration(readme_default)) {
                (Some(a), Some(b)) => assert_eq!(a, b, "default of {key}"),
                _ => assert_eq!(default, readme_default, "default of {key}"),
            }
        }
    }
}
