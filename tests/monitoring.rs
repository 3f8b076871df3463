//! The monitoring that ships in the package, checked against the real daemon: every PromQL
//! expression of the Grafana dashboard and the alert rules names only metrics a real
//! `/metrics` scrape shows; the rules pass `promtool test rules`; and the README's health
//! check (a jq expression over `status --json`) is false until every stream succeeded.
//!
//! promtool (Debian's `prometheus`) and jq are required when `CI` is set (`.ci/run` installs
//! them); elsewhere a test that needs a missing tool says so and ends.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_oms-sync");

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

const DASHBOARD: &str = "packaging/grafana/oms-sync-dashboard.json";
const RULES: &str = "packaging/prometheus/oms-sync-alerts.yml";
const RULES_TEST: &str = "packaging/prometheus/oms-sync-alerts.test.yml";

/// Whether `tool` runs; when it does not, a failure under CI, a note elsewhere.
fn tool_available(tool: &str, version_arg: &str) -> bool {
    let ok = Command::new(tool)
        .arg(version_arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "{tool} is required when CI is set (.ci/run installs it)"
        );
        eprintln!("{tool} not installed: skipped (required when CI is set)");
    }
    ok
}

fn write_config(dir: &Path, base_url: &str, token: &str, rest: &str) -> PathBuf {
    let cfg = dir.join("oms-sync.toml");
    let text = format!(
        "[api]\nbase_url = \"{base_url}\"\ntoken = \"{token}\"\nretry_min_delay = \"10ms\"\nretry_max_delay = \"50ms\"\nmax_retries = 0\npage_size = 50\nmax_requests_per_second = 200\n\n[warehouse]\npath = \"{}\"\n\n{rest}\n",
        dir.join("warehouse.db").display()
    );
    std::fs::write(&cfg, text).expect("write config");
    cfg
}

fn oms_sync(cfg: &Path, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .arg("--config")
        .arg(cfg)
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .output()
        .expect("run oms-sync")
}

/// Kills the daemon when the test ends, however it ends.
struct Daemon(std::process::Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The sample names of a real scrape of the daemon after its first pass (with rows stored and
/// a rate limit configured, so the lag and the limit are present too).
async fn scraped_metric_names() -> BTreeSet<String> {
    let oms = common::fake(common::distinct(80)).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let cfg = write_config(
        dir.path(),
        &oms.base_url(),
        &oms.token(),
        &format!("[sync]\ninterval = \"1h\"\n\n[metrics]\nlisten = \"127.0.0.1:{port}\""),
    );
    let _daemon = Daemon(
        Command::new(BIN)
            .arg("--config")
            .arg(&cfg)
            .env_remove("RUST_LOG")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the daemon"),
    );
    let url = format!("http://127.0.0.1:{port}/metrics");
    let client = reqwest::Client::new();
    let mut text = String::new();
    for _ in 0..300 {
        if let Ok(resp) = client.get(&url).send().await {
            text = resp.text().await.unwrap_or_default();
            if text.contains("outcome=\"succeeded\"} 1") {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        text.contains("outcome=\"succeeded\"} 1"),
        "no successful pass in\n{text}"
    );
    let names: BTreeSet<String> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect();
    for needed in [
        "oms_sync_lag_seconds",
        "oms_sync_rate_limit_requests_per_second",
    ] {
        assert!(names.contains(needed), "{needed} missing in\n{text}");
    }
    names
}

/// PromQL words that are not metric names: keywords and aggregation operators (which may be
/// followed by `by (…)` rather than their parenthesis).
const KEYWORDS: [&str; 25] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "inf",
    "nan",
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
];

/// The metric names an expression reads: identifiers outside label matchers, ranges and
/// strings, that are neither functions (followed by `(`), keywords nor grouping labels.
fn metric_names(expr: &str) -> BTreeSet<String> {
    // Blank out `{…}`, `[…]` and quoted strings (label values, durations, variables);
    // blanked, not removed, so `a{…}(` cannot read as a call.
    let mut plain = String::with_capacity(expr.len());
    let mut close: Option<char> = None;
    for c in expr.chars() {
        match close {
            Some(end) if c == end => {
                close = None;
                plain.push(' ');
            }
            Some(_) => plain.push(' '),
            None => match c {
                '{' => close = Some('}'),
                '[' => close = Some(']'),
                '"' => close = Some('"'),
                _ => plain.push(c),
            },
        }
    }
    let chars: Vec<char> = plain.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let mut grouping = false;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "_:".contains(chars[i])) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = chars[i..].iter().find(|c| !c.is_whitespace());
            let preceded_by_dollar = start > 0 && chars[start - 1] == '$';
            if [
                "by",
                "without",
                "on",
                "ignoring",
                "group_left",
                "group_right",
            ]
            .contains(&word.as_str())
            {
                // Its label list, if any, follows in parentheses.
                grouping = next == Some(&'(');
            } else if grouping || next == Some(&'(') || preceded_by_dollar {
                // A function, or a label of `by (…)`.
            } else if !KEYWORDS.contains(&word.to_lowercase().as_str()) {
                names.insert(word);
            }
        } else {
            if c == ')' {
                grouping = false;
            }
            if c.is_ascii_digit() || c == '.' {
                // Numbers (0.95, 1e3) are not names: skip the whole literal.
                while i + 1 < chars.len()
                    && (chars[i + 1].is_ascii_alphanumeric() || chars[i + 1] == '.')
                {
                    i += 1;
                }
            }
            i += 1;
        }
    }
    names
}

#[test]
fn the_promql_reader_finds_metric_names_only() {
    let got = metric_names(
        r#"histogram_quantile(0.95, sum by (le) (rate(a_bucket{x=~"$i",y="b c"}[$__rate_interval]))) / on(instance) group_left b_total > bool 1e3 and time() - c"#,
    );
    let want: BTreeSet<String> = ["a_bucket", "b_total", "c"].map(String::from).into();
    assert_eq!(got, want);
}

/// Every `expr` of the dashboard's panels and the metric of each template query.
fn dashboard_exprs() -> Vec<String> {
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, x) in m {
                    match (k.as_str(), x) {
                        ("expr", serde_json::Value::String(s)) => out.push(s.clone()),
                        _ => walk(x, out),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let dash: serde_json::Value = serde_json::from_str(&read(DASHBOARD)).expect("dashboard JSON");
    let mut exprs = Vec::new();
    walk(&dash["panels"], &mut exprs);
    // `label_values(metric{…}, label)`: the metric is the first argument.
    for var in dash["templating"]["list"].as_array().expect("templating") {
        if var["type"] == "datasource" {
            continue;
        }
        let q = var["query"]["query"]
            .as_str()
            .or_else(|| var["query"].as_str())
            .expect("a template query");
        let inner = q
            .strip_prefix("label_values(")
            .and_then(|r| r.rsplit_once(','))
            .map(|(m, _)| m.to_string())
            .unwrap_or_else(|| panic!("unexpected template query {q}"));
        exprs.push(inner);
    }
    exprs
}

/// The `expr:` of every alert rule (one line each, as the file writes them).
fn rule_exprs() -> Vec<String> {
    let text = read(RULES);
    let exprs: Vec<String> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("expr:"))
        .map(|e| e.trim().to_string())
        .collect();
    let alerts = text
        .lines()
        .filter(|l| l.trim().starts_with("- alert:"))
        .count();
    assert_eq!(exprs.len(), alerts, "one single-line expr per alert");
    exprs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_and_alerts_read_only_metrics_the_daemon_exports() {
    let exported = scraped_metric_names().await;
    let dashboard = dashboard_exprs();
    assert!(dashboard.len() >= 10, "{dashboard:?}");
    let mut used = BTreeSet::new();
    for expr in &dashboard {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "no metric in {expr}");
        for n in names {
            assert!(
                exported.contains(&n),
                "dashboard: {n} is not exported (in {expr})\nexported: {exported:?}"
            );
            used.insert(n);
        }
    }
    // What the dashboard promises to show, per the panels it has.
    for needed in [
        "oms_sync_last_success_timestamp_seconds",
        "oms_sync_lag_seconds",
        "oms_sync_passes_total",
        "oms_sync_rows_total",
        "oms_sync_request_errors_total",
        "oms_sync_rate_limit_requests_per_second",
        "oms_sync_request_duration_seconds_bucket",
    ] {
        assert!(
            used.contains(needed),
            "the dashboard does not show {needed}"
        );
    }
    // Alerts may also read `up`, the scrape's own health, which Prometheus makes.
    for expr in rule_exprs() {
        for n in metric_names(&expr) {
            assert!(
                exported.contains(&n) || n == "up",
                "alert rules: {n} is not exported (in {expr})"
            );
        }
    }
    // The rule tests feed series of the real names too, or they test nothing real.
    let series: Vec<String> = read(RULES_TEST)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- series:"))
        .map(|s| s.trim().trim_matches('\'').to_string())
        .collect();
    assert!(series.len() >= 5, "{series:?}");
    for s in series {
        let name = s.split('{').next().unwrap_or_default();
        assert!(
            exported.contains(name) || name == "up",
            "rule test series {name} is not exported"
        );
    }
}

#[test]
fn dashboard_panels_are_importable() {
    let dash: serde_json::Value = serde_json::from_str(&read(DASHBOARD)).expect("dashboard JSON");
    assert_eq!(dash["uid"], "oms-sync");
    // The data source is a variable, so the file works both imported and provisioned.
    let vars = dash["templating"]["list"].as_array().expect("templating");
    assert!(
        vars.iter().any(|v| v["name"] == "datasource"
            && v["type"] == "datasource"
            && v["query"] == "prometheus"),
        "{vars:?}"
    );
    let panels = dash["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    for p in panels {
        assert!(
            ids.insert(p["id"].as_i64().expect("panel id")),
            "duplicate id in {p}"
        );
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{}", p["title"]);
        for t in targets {
            assert_eq!(t["datasource"]["uid"], "${datasource}", "{}", p["title"]);
            assert!(t["expr"].as_str().is_some_and(|e| !e.is_empty()));
        }
    }
}

#[test]
fn alert_rules_pass_promtool() {
    if !tool_available("promtool", "--version") {
        return;
    }
    let dir = root().join("packaging/prometheus");
    let check = Command::new("promtool")
        .args(["check", "rules", "oms-sync-alerts.yml"])
        .current_dir(&dir)
        .output()
        .expect("promtool check rules");
    assert!(check.status.success(), "{check:?}");
    let test = Command::new("promtool")
        .args(["test", "rules", "oms-sync-alerts.test.yml"])
        .current_dir(&dir)
        .output()
        .expect("promtool test rules");
    assert!(
        test.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&test.stdout),
        String::from_utf8_lossy(&test.stderr)
    );
    assert!(String::from_utf8_lossy(&test.stdout).contains("SUCCESS"));
}

/// The jq expression of the README's health check (`status --json | jq -e '…'`).
fn readme_health_check() -> String {
    let readme = read("README.md");
    let line = readme
        .lines()
        .find(|l| l.contains("status --json | jq -e '"))
        .expect("the README shows a health check");
    let expr = line
        .split("jq -e '")
        .nth(1)
        .and_then(|r| r.split('\'').next());
    expr.expect("a quoted jq expression").to_string()
}

/// Runs `jq -e expr` on `json`: its exit code (0 healthy, 1 not).
fn jq(expr: &str, json: &[u8]) -> Option<i32> {
    let mut child = Command::new("jq")
        .args(["-e", expr])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn jq");
    child
        .stdin
        .take()
        .expect("jq stdin")
        .write_all(json)
        .expect("feed jq");
    child.wait().expect("jq ends").code()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_health_check_is_healthy_only_after_a_recent_success() {
    if !tool_available("jq", "--version") {
        return;
    }
    let expr = readme_health_check();
    let status = |cfg: &Path| {
        let out = oms_sync(cfg, &["status", "--json"]);
        assert!(out.status.success(), "{out:?}");
        out.stdout
    };

    // Never succeeded: the only pass failed (closed port). The fields are null: unhealthy.
    let dir = tempfile::tempdir().expect("temp dir");
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let cfg = write_config(dir.path(), &format!("http://127.0.0.1:{closed}"), "t", "");
    assert_eq!(oms_sync(&cfg, &["--once"]).status.code(), Some(4));
    let never = status(&cfg);
    let v: serde_json::Value = serde_json::from_slice(&never).expect("JSON");
    assert!(v["total"]["since_last_success_seconds"].is_null(), "{v}");
    assert_eq!(
        jq(&expr, &never),
        Some(1),
        "healthy without any success: {expr}"
    );

    // Fresh: a pass just succeeded.
    let oms = common::fake(common::distinct(30)).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = write_config(dir.path(), &oms.base_url(), &oms.token(), "");
    assert!(oms_sync(&cfg, &["--once"]).status.success());
    assert_eq!(
        jq(&expr, &status(&cfg)),
        Some(0),
        "unhealthy after a success: {expr}"
    );

    // Stale: the same success an hour ago.
    let conn = rusqlite::Connection::open(dir.path().join("warehouse.db")).expect("open");
    let an_hour_ago =
        oms_sync::timefmt::canonical(&(chrono::Utc::now() - chrono::TimeDelta::hours(1)));
    conn.execute(
        "UPDATE sync_runs SET finished_at = ?1 WHERE status = 'succeeded'",
        [&an_hour_ago],
    )
    .expect("age the run");
    drop(conn);
    assert_eq!(
        jq(&expr, &status(&cfg)),
        Some(1),
        "healthy an hour after: {expr}"
    );
}
