//! The log through the real binary: text lines a logfmt parser reads whole (values with
//! spaces quoted), the start line's settings, configuration errors as JSON when the config
//! asks for JSON logs, and no library chatter from PostgreSQL connects below debug.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use fake_oms::Fault;

const BIN: &str = env!("CARGO_BIN_EXE_oms-sync");

/// Runs the binary to completion off the runtime (the fake OMS serves from its workers).
async fn run(config: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .arg("--config")
        .arg(config)
        .args(args);
    tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .expect("run oms-sync")
}

/// A logfmt parser as log shippers have it: `key=bare`, `key="quoted \" text"`, and bare
/// words (keys without a value; the message's words are read so). Quoted values are
/// unescaped.
fn logfmt(text: &str) -> (BTreeMap<String, String>, Vec<String>) {
    let (mut pairs, mut bare) = (BTreeMap::new(), Vec::new());
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == ' ' || c == '=' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if key.is_empty() && chars.peek().is_none() {
            break;
        }
        if chars.peek() != Some(&'=') {
            bare.push(key);
            continue;
        }
        chars.next();
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some('n') => value.push('\n'),
                        Some(c) => value.push(c),
                        None => break,
                    },
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ' ' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        pairs.insert(key, value);
    }
    (pairs, bare)
}

/// The fields after `message` in the first text line holding it.
fn fields_after<'a>(stderr: &'a str, message: &str) -> &'a str {
    let line = stderr
        .lines()
        .find(|l| l.contains(message))
        .unwrap_or_else(|| panic!("no {message:?} line in:\n{stderr}"));
    let at = line.find(message).unwrap_or(0) + message.len();
    &line[at..]
}

fn write_config(dir: &Path, base_url: &str, token: &str, extra: &str) -> std::path::PathBuf {
    let p = dir.join("c.toml");
    std::fs::write(
        &p,
        format!(
            "[api]\nbase_url = \"{base_url}\"\ntoken = \"{token}\"\nretry_min_delay = \"10ms\"\nretry_max_delay = \"20ms\"\n[warehouse]\npath = \"{}\"\n{extra}\n",
            dir.join("w.db").display()
        ),
    )
    .expect("write config");
    p
}

/// 24.13: `mark=… (rows at this instant are read again next pass)` and an error with spaces
/// are read whole by a logfmt parser, equal to what the warehouse recorded; nothing after the
/// message is left as stray bare words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_log_values_with_spaces_are_quoted_for_logfmt_parsers() {
    let oms = common::fake(common::distinct(30)).await;
    oms.push_fault(Fault::html(503));
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = write_config(
        dir.path(),
        &oms.base_url(),
        &oms.token(),
        "[sync]\nlookback = \"90s\"",
    );
    let out = run(&cfg, &["--once"], &[]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");

    let (pass, bare) = logfmt(fields_after(&stderr, "pass finished"));
    assert!(bare.is_empty(), "stray words {bare:?} in {pass:?}");
    let conn = rusqlite::Connection::open(dir.path().join("w.db")).expect("open warehouse");
    let recorded: String = conn
        .query_row(
            "SELECT mark_after FROM sync_runs ORDER BY id DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .expect("the run's mark");
    assert!(recorded.contains(' '), "a mark in words: {recorded}");
    assert_eq!(pass.get("mark"), Some(&recorded), "{pass:?}");
    assert_eq!(
        pass.get("fetched").map(String::as_str),
        Some("30"),
        "{pass:?}"
    );

    let (retry, bare) = logfmt(fields_after(&stderr, "request failed, retrying"));
    assert!(bare.is_empty(), "stray words {bare:?} in {retry:?}");
    let error = retry.get("error").expect("error field");
    assert!(error.contains("503") && error.contains(' '), "{error}");

    // 24.13: the start line names the version and the settings that shape every pass.
    let (start, bare) = logfmt(fields_after(&stderr, "oms-sync starting"));
    assert!(bare.is_empty(), "stray words {bare:?} in {start:?}");
    assert_eq!(
        start.get("version").map(String::as_str),
        Some(env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(
        start.get("interval").map(String::as_str),
        Some("1m"),
        "{start:?}"
    );
    assert_eq!(
        start.get("lookback").map(String::as_str),
        Some("1m 30s"),
        "{start:?}"
    );
    assert_eq!(
        start.get("streams").map(String::as_str),
        Some("customers"),
        "{start:?}"
    );
}

/// 24.13: with `log.format = "json"` a configuration error is one JSON event too, whether
/// the file names an unknown key or a bad value, and from the environment alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_errors_are_json_when_the_config_asks_for_json_logs() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (extra, key) in [
        ("[sync]\nbogus = 1\n[log]\nformat = \"json\"", "bogus"),
        (
            "[sync]\ninterval = \"0s\"\n[log]\nformat = \"json\"",
            "sync.interval",
        ),
    ] {
        let cfg = write_config(dir.path(), "http://127.0.0.1:9", "t", extra);
        let out = run(&cfg, &["--once"], &[]).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{stderr}");
        let event: serde_json::Value =
            serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("{e}: {stderr}"));
        assert_eq!(event["level"], "ERROR", "{event}");
        assert_eq!(event["exit_code"], 2, "{event}");
        let message = event["message"].as_str().unwrap_or_default();
        assert!(message.contains(key), "{message}");
    }
    // The environment's choice counts too; and text stays text.
    let cfg = write_config(dir.path(), "http://127.0.0.1:9", "t", "[sync]\nbogus = 1");
    let out = run(&cfg, &["--once"], &[("OMS_SYNC__LOG__FORMAT", "json")]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        serde_json::from_str::<serde_json::Value>(stderr.trim()).is_ok(),
        "{stderr}"
    );
    let out = run(&cfg, &["--once"], &[]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("error: "), "{stderr}");
}

/// 24.10: a PostgreSQL connect logs no INFO lines of the migration library or the driver
/// (`NOTICE: relation … already exists, skipping`) unless the level is debug.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_library_chatter_stays_below_info() {
    let Ok(url) = std::env::var(common::PG_ENV) else {
        eprintln!("skipped: {} is not set", common::PG_ENV);
        return;
    };
    let schema = format!("logs_{}", std::process::id());
    let oms = common::fake(common::distinct(10)).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let text = |level: &str| {
        format!(
            "[api]\nbase_url = \"{}\"\ntoken = \"{}\"\n[warehouse]\nurl = \"{url}\"\nschema = \"{schema}\"\nallow_insecure = true\n[log]\nlevel = \"{level}\"\n",
            oms.base_url(),
            oms.token()
        )
    };
    let cfg = dir.path().join("c.toml");
    let mut seen = Vec::new();
    // Twice at info: the second connect finds everything in place (the NOTICE case).
    for level in ["info", "info", "debug"] {
        std::fs::write(&cfg, text(level)).expect("write config");
        let out = run(&cfg, &["--once"], &[]).await;
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        let chatter = stderr
            .lines()
            .filter(|l| {
                l.contains("refinery") || l.contains("tokio_postgres") || l.contains("NOTICE")
            })
            .count();
        seen.push(chatter);
    }
    let drop = format!("DROP SCHEMA IF EXISTS {schema} CASCADE");
    std::thread::spawn(move || {
        let mut c = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
        c.batch_execute(&drop).expect("drop the test schema");
    })
    .join()
    .expect("drop thread");
    assert_eq!(&seen[..2], &[0, 0], "library lines at info: {seen:?}");
    assert!(
        seen[2] > 0,
        "at debug they show (so the filter is what hid them): {seen:?}"
    );
}
