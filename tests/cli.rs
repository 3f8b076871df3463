//! The command line through the real binary, in temp dirs, against the fake OMS started in
//! this process: exit codes, one-line errors, logging (levels, formats, no colours in pipes)
//! and that the token never reaches the output.

mod common;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fake_oms::FakeOms;
use oms_sync::stream::Stream;

const BIN: &str = env!("CARGO_BIN_EXE_oms-sync");

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Longest a run may take before the test fails (and the process is killed).
const RUN_LIMIT: Duration = Duration::from_secs(60);

/// Runs the binary to completion; output goes to files (trace logs overflow a pipe).
async fn run(args: Vec<String>, env: Vec<(&'static str, String)>) -> Run {
    let dir = tempfile::tempdir().expect("temp dir");
    let (out_path, err_path) = (dir.path().join("out"), dir.path().join("err"));
    let mut cmd = Command::new(BIN);
    for k in ["RUST_LOG", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
        cmd.env_remove(k);
    }
    let mut child = cmd
        .args(&args)
        .envs(env)
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).expect("stdout file"))
        .stderr(File::create(&err_path).expect("stderr file"))
        .spawn()
        .expect("run oms-sync");
    let started = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            break st;
        }
        if started.elapsed() > RUN_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("oms-sync {args:?} still running after {RUN_LIMIT:?}");
        }
        // Async sleep: the fake OMS serves from this runtime meanwhile.
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let r = Run {
        code: status.code(),
        stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
    };
    assert!(!r.stderr.contains("panicked"), "panic:\n{}", r.stderr);
    assert!(!r.stderr.contains("RUST_BACKTRACE"), "{}", r.stderr);
    r
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write file");
    p
}

/// A complete config for `oms` with `extra` appended (more sections).
fn config(dir: &Path, base_url: &str, token: &str, api: &str, extra: &str) -> PathBuf {
    let text = format!(
        "[api]\nbase_url = \"{base_url}\"\ntoken = \"{token}\"\npage_size = 50\nretry_min_delay = \"10ms\"\nretry_max_delay = \"50ms\"\n{api}\n\n[warehouse]\npath = \"{}\"\n\n{extra}\n",
        dir.join("warehouse.db").display()
    );
    write(dir, "oms-sync.toml", &text)
}

/// `oms-sync demo --customers N --db DB` (a path or a PostgreSQL URL).
async fn demo(customers: u32, db: &str) -> Run {
    run(
        vec![
            "demo".into(),
            "--customers".into(),
            customers.to_string(),
            "--db".into(),
            db.into(),
        ],
        vec![],
    )
    .await
}

fn args(config: &Path, rest: &[&str]) -> Vec<String> {
    let mut v = vec!["--config".to_string(), config.display().to_string()];
    v.extend(rest.iter().map(|s| s.to_string()));
    v
}

/// The error lines (`error: ...`) of stderr.
fn errors(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.starts_with("error")).collect()
}

async fn fake() -> FakeOms {
    common::fake(common::distinct(120)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_exits_0_and_the_warehouse_is_in_step() {
    let oms = fake().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = config(dir.path(), &oms.base_url(), &oms.token(), "", "");
    let r = run(args(&cfg, &["--once"]), vec![]).await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    common::assert_in_step(&oms, &common::rows(&dir.path().join("warehouse.db")), true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_config_key_exits_2_with_one_line_naming_the_key_and_a_fix() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cases = [
        (
            "[api]\nbase_url = \"http://127.0.0.1:9\"\ntoken = \"t\"\n",
            "warehouse.path",
        ),
        (
            "[api]\ntoken = \"t\"\n[warehouse]\npath = \"w.db\"\n",
            "api.base_url",
        ),
        (
            "[api]\nbase_url = \"http://127.0.0.1:9\"\n[warehouse]\npath = \"w.db\"\n",
            "api.token",
        ),
    ];
    for (text, key) in cases {
        let cfg = write(dir.path(), "c.toml", text);
        let r = run(args(&cfg, &["--once"]), vec![]).await;
        assert_eq!(r.code, Some(2), "{key}: {}", r.stderr);
        let lines: Vec<&str> = r.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{key}: {}", r.stderr);
        assert!(lines[0].contains(key), "{key}: {}", r.stderr);
        assert!(lines[0].contains("fix:"), "{key}: {}", r.stderr);
        assert!(
            lines[0].contains(&oms_sync::config::env_name(key)),
            "{}",
            r.stderr
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_config_key_exits_2_naming_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = config(dir.path(), "http://127.0.0.1:9", "t", "page_sise = 10", "");
    let r = run(args(&cfg, &["--once"]), vec![]).await;
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert!(r.stderr.contains("page_sise"), "{}", r.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_errors_exit_2() {
    let r = run(vec!["--once".into()], vec![]).await;
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(r.stderr.contains("--config"), "{}", r.stderr);
    let r = run(vec!["--no-such-flag".into()], vec![]).await;
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    let dir = tempfile::tempdir().expect("temp dir");
    let r = run(args(&dir.path().join("absent.toml"), &["--once"]), vec![]).await;
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert_eq!(errors(&r.stderr).len(), 1, "{}", r.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_token_exits_3_with_one_authentication_line() {
    let oms = fake().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = config(dir.path(), &oms.base_url(), "wrong-token", "", "");
    let r = run(args(&cfg, &["--once"]), vec![]).await;
    assert_eq!(r.code, Some(3), "{}", r.stderr);
    let auth: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.contains("authentication failed"))
        .collect();
    assert_eq!(auth.len(), 1, "{}", r.stderr);
    assert!(auth[0].starts_with("error:") && auth[0].contains("fix:"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_api_exits_4() {
    // A port nobody listens on: bind one, then free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = config(
        dir.path(),
        &format!("http://127.0.0.1:{port}"),
        "t",
        "max_retries = 1\ntimeout = \"2s\"",
        "",
    );
    let r = run(args(&cfg, &["--once"]), vec![]).await;
    assert_eq!(r.code, Some(4), "{}", r.stderr);
    let errs = errors(&r.stderr);
    assert_eq!(errs.len(), 1, "{}", r.stderr);
    assert!(errs[0].contains("unreachable"), "{}", r.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_warehouse_exits_5() {
    let oms = fake().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = config(dir.path(), &oms.base_url(), &oms.token(), "", "");
    let db = dir.path().join("warehouse.db");
    // A directory where the file should be.
    std::fs::create_dir(&db).expect("mkdir");
    let r = run(args(&cfg, &["--once"]), vec![]).await;
    assert_eq!(r.code, Some(5), "{}", r.stderr);
    assert_eq!(errors(&r.stderr).len(), 1, "{}", r.stderr);
    assert!(r.stderr.contains("fix:"), "{}", r.stderr);
    std::fs::remove_dir(&db).expect("rmdir");
    // A file that is not SQLite.
    std::fs::write(&db, "just some notes, not a database\n".repeat(200)).expect("write");
    let r = run(args(&cfg, &["--once"]), vec![]).await;
    assert_eq!(r.code, Some(5), "{}", r.stderr);
    let errs = errors(&r.stderr);
    assert_eq!(errs.len(), 1, "{}", r.stderr);
    assert!(errs[0].contains("not a SQLite database"), "{}", r.stderr);
    // status on it fails the same way.
    let r = run(args(&cfg, &["status"]), vec![]).await;
    assert_eq!(r.code, Some(5), "{}", r.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_exits_0() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("demo.db");
    let r = demo(2000, &db.display().to_string()).await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stdout.contains("backfill"), "{}", r.stdout);
    let live: i64 = rusqlite::Connection::open(&db)
        .and_then(|c| c.query_row("SELECT count(*) FROM live_customers", [], |r| r.get(0)))
        .expect("demo warehouse");
    assert!(live >= 2000, "{live}");
}

/// `demo | head -3`: a reader that stops early does not leave a half-built warehouse; the demo
/// finishes it (all four passes of each stream recorded) and ends quietly. Its counts agree with the story
/// it tells, and its suggested queries open the file read-only.
#[test]
fn demo_into_a_closed_pipe_still_finishes_its_warehouse() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("demo.db");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_oms-sync"))
        .args(["demo", "--customers", "3000", "--db"])
        .arg(&db)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("demo starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    for _ in 0..3 {
        lines.next().expect("a line").expect("utf-8");
    }
    drop(lines); // like `head -3` exiting
    let out = child.wait_with_output().expect("demo ends");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let c = rusqlite::Connection::open(&db).expect("demo warehouse");
    let runs: i64 = c
        .query_row(
            "SELECT count(*) FROM sync_runs WHERE status = 'succeeded'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(runs, 4 * 3, "all four passes of the three streams finished");
    let deleted: i64 = c
        .query_row(
            "SELECT count(*) FROM customers WHERE deleted_at IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(deleted > 0, "the backfill ran to its end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_counts_agree_and_queries_are_read_only() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("demo.db");
    let r = demo(20000, &db.display().to_string()).await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let said = r
        .stdout
        .lines()
        .find(|l| l.contains("the OMS changes:"))
        .and_then(|l| l.split_whitespace().nth(3)?.parse::<u64>().ok())
        .expect("the story names the updated customers");
    let pass2 = r
        .stdout
        .lines()
        .find(|l| l.starts_with("2. incremental pass"))
        .expect("pass 2 line");
    let words: Vec<&str> = pass2.split_whitespace().collect();
    let updated: u64 = words[words.iter().position(|w| *w == "updated").unwrap() - 1]
        .parse()
        .unwrap();
    assert_eq!(updated, said, "{pass2}");
    for l in r
        .stdout
        .lines()
        .filter(|l| l.trim_start().starts_with("sqlite3 "))
    {
        assert!(l.contains("sqlite3 -readonly "), "{l}");
    }
}

/// Every output of a run at `RUST_LOG=trace`, checked for the token.
fn assert_no_token(r: &Run, token: &str, what: &str) {
    assert!(!r.stderr.contains(token), "{what}: token in stderr");
    assert!(!r.stdout.contains(token), "{what}: token in stdout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_never_appears_in_output_even_at_trace() {
    let oms = fake().await;
    let token = "tok-7f3c9e1a4d-NEVER-LOG-ME-5b2d";
    oms.knobs(|k| k.token = token.into());
    let wrong = "bad-91ac3f77-NEVER-LOG-ME-e04d";
    for format in ["text", "json"] {
        let dir = tempfile::tempdir().expect("temp dir");
        // log.level says error; RUST_LOG wins and turns on everything, all crates included.
        let extra = format!("[log]\nlevel = \"error\"\nformat = \"{format}\"");
        let cfg = config(dir.path(), &oms.base_url(), token, "", &extra);
        let env = vec![("RUST_LOG", "trace".to_string())];
        let r = run(args(&cfg, &["--once"]), env.clone()).await;
        assert_eq!(r.code, Some(0), "{}", r.stderr);
        assert_no_token(&r, token, format);
        // The HTTP stack did log at trace, so the check means something.
        assert!(r.stderr.contains("hyper"), "{format}: no hyper trace");
        assert!(r.stderr.contains("TRACE"), "{format}: no TRACE lines");
        assert!(!r.stderr.contains('\x1b'), "{format}: colours in a pipe");

        let r = run(args(&cfg, &["--backfill"]), env.clone()).await;
        assert_eq!(r.code, Some(0), "{}", r.stderr);
        assert_no_token(&r, token, format);

        let r = run(args(&cfg, &["status", "--json"]), env.clone()).await;
        assert_eq!(r.code, Some(0), "{}", r.stderr);
        assert_no_token(&r, token, format);

        // A rejected token is not echoed either.
        let cfg = config(dir.path(), &oms.base_url(), wrong, "", &extra);
        let r = run(args(&cfg, &["--once"]), env).await;
        assert_eq!(r.code, Some(3), "{}", r.stderr);
        assert_no_token(&r, wrong, format);
        assert!(r.stderr.contains("authentication failed"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_have_one_line_per_pass_with_its_figures() {
    let oms = fake().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = config(
        dir.path(),
        &oms.base_url(),
        &oms.token(),
        "",
        "[log]\nformat = \"json\"",
    );
    let r = run(args(&cfg, &["--once"]), vec![]).await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let events: Vec<serde_json::Value> = r
        .stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let passes: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["message"] == "pass finished")
        .collect();
    assert_eq!(passes.len(), 1, "{}", r.stderr);
    let p = passes[0];
    assert_eq!(p["level"], "INFO");
    assert_eq!(p["kind"], "incremental");
    assert_eq!(p["inserted"], 120);
    assert_eq!(p["pages"], 3);
    for f in [
        "fetched",
        "updated",
        "unchanged",
        "deleted",
        "quarantined",
        "mark",
    ] {
        assert!(!p[f].is_null(), "{f} missing: {p}");
    }

    // log.level applies when RUST_LOG is unset: at warn a clean run says nothing.
    let cfg = config(
        dir.path(),
        &oms.base_url(),
        &oms.token(),
        "",
        "[log]\nlevel = \"warn\"",
    );
    let r = run(args(&cfg, &["--once"]), vec![]).await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(r.stderr, "", "nothing below warn");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_port_in_use_exits_2_with_one_line() {
    let oms = fake().await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = config(
        dir.path(),
        &oms.base_url(),
        &oms.token(),
        "",
        &format!("[metrics]\nlisten = \"{addr}\""),
    );
    // The daemon (no --once): it must fail at start-up, before any pass.
    let r = run(args(&cfg, &[]), vec![]).await;
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    let errs = errors(&r.stderr);
    assert_eq!(errs.len(), 1, "{}", r.stderr);
    assert!(errs[0].contains("metrics.listen") && errs[0].contains("fix:"));
    assert_eq!(oms.total_requests(), 0);
    drop(taken);
}

/// A malformed record is quarantined with a warning that names its id, and the pass succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quarantined_record_is_named_in_a_warning_and_the_pass_succeeds() {
    let oms = fake().await;
    oms.with_store(|s| {
        let c = s.get(7).expect("customer 7").clone();
        let md = c.modified_date;
        s.upsert(c.with_raw(
            serde_json::json!({"id": 7, "modified_date": md.to_rfc3339(), "channel": "web"}),
        ));
    });
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &oms.base_url(), &oms.token(), "", "");
    let r = run(args(&cfg, &["--once"]), vec![]).await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let warning = r
        .stderr
        .lines()
        .find(|l| l.contains("record quarantined"))
        .unwrap_or_else(|| panic!("no quarantine warning in:\n{}", r.stderr));
    assert!(
        warning.contains("WARN")
            && warning.contains("Some(7)")
            && warning.contains("field `channel`"),
        "{warning}"
    );
    let rows: i64 = rusqlite::Connection::open(dir.path().join("warehouse.db"))
        .unwrap()
        .query_row(
            "SELECT count(*) FROM quarantine WHERE record_id = 7",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(rows, 1);
}

/// `status` reads only the warehouse: it works where the token cannot be read, as for an
/// operator running it outside the systemd unit that hands the token over as a credential.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_works_without_the_token() {
    let oms = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &oms.base_url(), &oms.token(), "", "");
    assert_eq!(run(args(&cfg, &["--once"]), vec![]).await.code, Some(0));
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        &format!("token = \"{}\"", oms.token()),
        "token_file = \"$CREDENTIALS_DIRECTORY/oms-token\"",
    );
    std::fs::write(&cfg, text).unwrap();
    let r = run(args(&cfg, &["status", "--json"]), vec![]).await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["streams"]["customers"]["live"], 120);
    // The daemon itself still refuses such a config, naming the key.
    let r = run(args(&cfg, &["--once"]), vec![]).await;
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(r.stderr.contains("api.token_file"), "{}", r.stderr);
}

/// `status --json` is one object: the warehouse, a total over every stream and each stream of
/// `Stream::DEFAULT` (the streams a default config runs) by name. Before any pass succeeded the freshness fields are null.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_json_reports_every_stream_and_their_total() {
    let names: Vec<&str> = Stream::DEFAULT.iter().map(|s| s.name()).collect();
    let status = |cfg: PathBuf| async move {
        let r = run(args(&cfg, &["status", "--json"]), vec![]).await;
        assert_eq!(r.code, Some(0), "{}", r.stderr);
        let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("one JSON document");
        let keys: Vec<&str> = v
            .as_object()
            .expect("object")
            .keys()
            .map(|k| k.as_str())
            .collect();
        assert_eq!(keys, ["streams", "total", "warehouse"], "{v}");
        v
    };
    let streams_of = |v: &serde_json::Value| -> Vec<String> {
        v["streams"]
            .as_object()
            .expect("streams by name")
            .keys()
            .cloned()
            .collect()
    };

    // Nothing ever succeeded: a pass failed against a closed port.
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("http://127.0.0.1:{}", closed_port());
    let cfg = config(dir.path(), &url, "t", "max_retries = 0", "");
    assert_eq!(run(args(&cfg, &["--once"]), vec![]).await.code, Some(4));
    let v = status(cfg).await;
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(streams_of(&v), sorted);
    for stream in Stream::DEFAULT {
        let s = &v["streams"][stream.name()];
        assert_eq!(s["stream"], stream.name(), "{s}");
        assert_eq!(s["table"], stream.table(), "{s}");
        assert_eq!(s["live"], 0, "{s}");
        assert!(s["last_success_at"].is_null(), "{s}");
        assert!(s["since_last_success_seconds"].is_null(), "{s}");
        assert!(s["lag_seconds"].is_null(), "{s}");
    }
    assert_eq!(
        v["streams"]["customers"]["recent_runs"][0]["status"],
        "failed"
    );
    assert_eq!(v["total"]["live"], 0);
    assert!(v["total"]["since_last_success_seconds"].is_null(), "{v}");
    assert!(v["total"]["lag_seconds"].is_null(), "{v}");

    // After a pass: the total is the sum (and the stalest) of the streams.
    let oms = fake().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = config(dir.path(), &oms.base_url(), &oms.token(), "", "");
    assert_eq!(run(args(&cfg, &["--once"]), vec![]).await.code, Some(0));
    let v = status(cfg.clone()).await;
    assert_eq!(streams_of(&v), sorted);
    assert_eq!(v["streams"]["customers"]["live"], 120);
    let each = |k: &str| -> Vec<serde_json::Value> {
        names.iter().map(|n| v["streams"][n][k].clone()).collect()
    };
    let live: i64 = each("live").iter().filter_map(|x| x.as_i64()).sum();
    assert_eq!(v["total"]["live"].as_i64(), Some(live));
    let since: Vec<f64> = each("since_last_success_seconds")
        .iter()
        .map(|x| x.as_f64().expect("every stream succeeded"))
        .collect();
    let total_since = v["total"]["since_last_success_seconds"]
        .as_f64()
        .expect("a number");
    assert_eq!(Some(total_since), since.iter().copied().reduce(f64::max));
    assert!((0.0..60.0).contains(&total_since), "{total_since}");
    assert!(
        v["total"]["lag_seconds"].as_f64().is_some_and(|l| l > 0.0),
        "{v}"
    );

    // For people: one block per stream, each naming its stream and table.
    let r = run(args(&cfg, &["status"]), vec![]).await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    for stream in Stream::DEFAULT {
        let head = format!("stream      {} (table {})", stream.name(), stream.table());
        assert_eq!(r.stdout.matches(&head).count(), 1, "{}", r.stdout);
    }
    assert_eq!(
        r.stdout.matches("checkpoint  ").count(),
        Stream::DEFAULT.len()
    );
}

// ---- Issue 11: operator-facing defects, each through the real binary ----

/// A free loopback port nobody listens on.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// 11.1: `log.level = "eror"` silenced every log line; now it is a config error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misspelt_log_level_exits_2_naming_the_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    for level in ["eror", "verbose"] {
        let extra = format!("[log]\nlevel = \"{level}\"");
        let cfg = config(dir.path(), "http://127.0.0.1:9", "t", "", &extra);
        let r = run(args(&cfg, &["--once"]), vec![]).await;
        assert_eq!(r.code, Some(2), "{level}: {}", r.stderr);
        let errs = errors(&r.stderr);
        assert_eq!(errs.len(), 1, "{}", r.stderr);
        assert!(errs[0].contains("log.level") && errs[0].contains("fix:"));
    }
}

/// 11.2: refused connections are retried (the window said once), and the final line is short,
/// names host:port and the cause, and quotes no URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_api_says_the_retry_window_and_ends_with_a_short_line() {
    let port = closed_port();
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = config(
        dir.path(),
        &format!("http://127.0.0.1:{port}"),
        "t",
        "max_retries = 2",
        "",
    );
    let r = run(args(&cfg, &["--once"]), vec![]).await;
    assert_eq!(r.code, Some(4), "{}", r.stderr);
    let windows = r
        .stderr
        .lines()
        .filter(|l| l.contains("retrying up to 2 time(s), waiting at most"))
        .count();
    assert_eq!(windows, 1, "{}", r.stderr);
    let errs = errors(&r.stderr);
    assert_eq!(errs.len(), 1, "{}", r.stderr);
    let line = errs[0];
    assert!(line.len() < 200, "{} chars: {line}", line.len());
    assert!(line.contains(&format!("127.0.0.1:{port}")), "{line}");
    assert!(line.contains("connection refused"), "{line}");
    assert!(line.contains("after 3 attempts"), "{line}");
    assert!(!line.contains("list-simple"), "URL in the line: {line}");
}

/// 11.2: an https URL pointed at a plain HTTP server is not transient: no retries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_mismatch_fails_at_once_without_retries() {
    let oms = fake().await;
    let https = oms.base_url().replace("http://", "https://");
    let dir = tempfile::tempdir().expect("temp dir");
    // The default retry budget (8 retries, 500 ms .. 30 s) would take minutes if it applied.
    let text = format!(
        "[api]\nbase_url = \"{https}\"\ntoken = \"{}\"\n[warehouse]\npath = \"{}\"\n",
        oms.token(),
        dir.path().join("w.db").display()
    );
    let cfg = write(dir.path(), "c.toml", &text);
    let started = Instant::now();
    let r = run(args(&cfg, &["--once"]), vec![]).await;
    assert_eq!(r.code, Some(4), "{}", r.stderr);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(!r.stderr.contains("retrying"), "{}", r.stderr);
    let errs = errors(&r.stderr);
    assert_eq!(errs.len(), 1, "{}", r.stderr);
    let line = errs[0];
    let host_port = https.trim_start_matches("https://").trim_end_matches('/');
    assert!(line.contains(host_port), "{line}");
    assert!(line.contains("TLS") && line.contains("fix:"), "{line}");
    assert!(line.len() < 200, "{} chars: {line}", line.len());
}

/// 11.8: "after 1 attempts".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_attempt_is_singular() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("http://127.0.0.1:{}", closed_port());
    let cfg = config(dir.path(), &url, "t", "max_retries = 0", "");
    let r = run(args(&cfg, &["--once"]), vec![]).await;
    assert_eq!(r.code, Some(4), "{}", r.stderr);
    assert!(r.stderr.contains("after 1 attempt in"), "{}", r.stderr);
    assert!(!r.stderr.contains("1 attempts"), "{}", r.stderr);
}

/// 11.3: the demo's `status` hint works as printed, and env-only configuration works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_takes_a_db_path_and_config_may_come_from_the_environment_only() {
    let oms = fake().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("w.db");
    let env = vec![
        ("OMS_SYNC__API__BASE_URL", oms.base_url()),
        ("OMS_SYNC__API__TOKEN", oms.token()),
        ("OMS_SYNC__WAREHOUSE__PATH", db.display().to_string()),
    ];
    let r = run(vec!["--once".into()], env).await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    common::assert_in_step(&oms, &common::rows(&db), true);
    let r = run(
        vec!["status".into(), "--db".into(), db.display().to_string()],
        vec![],
    )
    .await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stdout.contains("120 live"), "{}", r.stdout);
    // Neither: the fix names --db.
    let r = run(vec!["status".into()], vec![]).await;
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(r.stderr.contains("--db PATH"), "{}", r.stderr);

    // The hint the demo prints is the command that works.
    let demo_db = dir.path().join("demo.db");
    let r = demo(300, &demo_db.display().to_string()).await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let hint = r
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("$ oms-sync "))
        .unwrap_or_else(|| panic!("no hint in {}", r.stdout));
    let r = run(hint.split_whitespace().map(String::from).collect(), vec![]).await;
    assert_eq!(r.code, Some(0), "{hint}: {}", r.stderr);
    assert!(r.stdout.contains("live"), "{}", r.stdout);
}

/// Runs with stdout a pipe whose reader has gone (as `| head` does once it has its lines).
fn run_with_closed_stdout(args: &[String]) -> (Option<i32>, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// 11.4: `oms-sync demo | head -2` panicked with exit 101; `status` could too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stdout_ends_quietly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("demo.db").display().to_string();
    let demo_args: Vec<String> = ["demo", "--customers", "300", "--db", &db]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let (code, stderr) = tokio::task::spawn_blocking(move || run_with_closed_stdout(&demo_args))
        .await
        .expect("join");
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("error"),
        "{stderr}"
    );
    // A finished demo warehouse, for status.
    let r = demo(300, &db).await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    for json in [false, true] {
        let mut a = vec!["status".to_string(), "--db".into(), db.clone()];
        if json {
            a.push("--json".into());
        }
        let (code, stderr) = tokio::task::spawn_blocking(move || run_with_closed_stdout(&a))
            .await
            .expect("join");
        assert_eq!(code, Some(0), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

/// 11.5: with `log.format = "json"` the fatal error is a JSON event like every other line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_end_with_the_fatal_error_as_a_json_event() {
    let oms = fake().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = config(
        dir.path(),
        &oms.base_url(),
        "wrong-token",
        "",
        "[log]\nformat = \"json\"",
    );
    let r = run(args(&cfg, &["--once"]), vec![]).await;
    assert_eq!(r.code, Some(3), "{}", r.stderr);
    let events: Vec<serde_json::Value> = r
        .stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let last = events.last().expect("an event");
    assert_eq!(last["level"], "ERROR", "{last}");
    assert_eq!(last["exit_code"], 3, "{last}");
    let msg = last["message"].as_str().unwrap_or_default();
    assert!(msg.contains("authentication failed"), "{last}");
}

/// 11.6: warehouse messages say what is wrong and leave nothing behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warehouse_errors_name_the_real_problem_and_leave_no_lock_file() {
    let oms = fake().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = config(dir.path(), &oms.base_url(), &oms.token(), "", "");
    let db = dir.path().join("warehouse.db");
    let lock = dir.path().join("warehouse.db.lock");
    std::fs::create_dir(&db).expect("mkdir");
    let r = run(args(&cfg, &["--once"]), vec![]).await;
    assert_eq!(r.code, Some(5), "{}", r.stderr);
    let errs = errors(&r.stderr);
    assert!(errs[0].contains("is a directory"), "{}", r.stderr);
    assert!(!errs[0].contains("create the directory"), "{}", r.stderr);
    assert!(!lock.exists(), "lock file left behind");
    std::fs::remove_dir(&db).expect("rmdir");

    std::fs::write(&db, "just some notes, not a database\n".repeat(200)).expect("write");
    let r = run(args(&cfg, &["--once"]), vec![]).await;
    assert_eq!(r.code, Some(5), "{}", r.stderr);
    assert!(!lock.exists(), "lock file left behind after a failed open");
    let r = run(args(&cfg, &["status"]), vec![]).await;
    assert_eq!(r.code, Some(5), "{}", r.stderr);
    let errs = errors(&r.stderr);
    assert_eq!(errs.len(), 1, "{}", r.stderr);
    assert!(errs[0].contains("fix:"), "{}", r.stderr);
    assert_eq!(
        errs[0].matches("not a").count(),
        1,
        "the cause is said once: {}",
        errs[0]
    );
}

/// 11.7: the key named is the one to fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_errors_name_the_key_in_use() {
    let dir = tempfile::tempdir().expect("temp dir");
    let token = write(dir.path(), "token", "");
    let text = format!(
        "[api]\nbase_url = \"http://127.0.0.1:9\"\ntoken_file = \"{}\"\n[warehouse]\npath = \"w.db\"\n",
        token.display()
    );
    let cfg = write(dir.path(), "c.toml", &text);
    let r = run(args(&cfg, &["--once"]), vec![]).await;
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(r.stderr.contains("`api.token_file`"), "{}", r.stderr);
    assert!(!r.stderr.contains("`api.token`"), "{}", r.stderr);
    let cfg = write(
        dir.path(),
        "c.toml",
        "[api]\nbase_url = \"http://127.0.0.1:9\"\n[warehouse]\npath = \"w.db\"\n",
    );
    let r = run(args(&cfg, &["--once"]), vec![]).await;
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(
        r.stderr.contains("OMS_SYNC__API__TOKEN_FILE"),
        "{}",
        r.stderr
    );
}

/// 11.8: wording and argument conflicts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_arguments_are_usage_errors_and_status_says_nothing_ran() {
    for flag in ["--once", "--backfill"] {
        let r = run(vec![flag.into(), "demo".into()], vec![]).await;
        assert_eq!(r.code, Some(2), "{flag} demo: {}", r.stderr);
        assert!(r.stderr.contains(flag), "{}", r.stderr);
    }
    let r = run(
        vec!["demo".into(), "--config".into(), "x.toml".into()],
        vec![],
    )
    .await;
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    let r = run(vec!["demo".into(), "--help".into()], vec![]).await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(!r.stdout.contains("--config"), "{}", r.stdout);

    // A warehouse where nothing ran yet: a fresh file from a failed pass.
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("http://127.0.0.1:{}", closed_port());
    let cfg = config(dir.path(), &url, "t", "max_retries = 0", "");
    assert_eq!(run(args(&cfg, &["--once"]), vec![]).await.code, Some(4));
    let r = run(args(&cfg, &["status"]), vec![]).await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(!r.stdout.contains("- ago"), "{}", r.stdout);
    assert!(r.stdout.contains("no successful pass yet"), "{}", r.stdout);
}

// ---- oms-sync check ----

fn check_lines(stdout: &str, step: &str) -> String {
    stdout
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(step))
        .unwrap_or_else(|| panic!("no {step} step in\n{stdout}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_passes_every_step_against_a_healthy_setup() {
    let oms = fake().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = config(dir.path(), &oms.base_url(), &oms.token(), "", "");
    let r = run(args(&cfg, &["check"]), vec![]).await;
    assert_eq!(r.code, Some(0), "{}\n{}", r.stdout, r.stderr);
    for step in [
        "config",
        "dns",
        "connect",
        "http",
        "auth",
        "endpoint",
        "warehouse",
    ] {
        assert!(
            check_lines(&r.stdout, step).starts_with("ok"),
            "{}",
            r.stdout
        );
    }
    // An unauthenticated probe of `/` (TLS and HTTP), then one authenticated request per
    // stream, each on its own `auth` line naming the stream and its endpoint, then each
    // endpoint's verification.
    assert_eq!(
        oms.total_requests(),
        1 + Stream::DEFAULT.len() as u64 * (1 + oms_sync::sync::verify::REQUESTS)
    );
    let auth: Vec<&str> = r
        .stdout
        .lines()
        .filter(|l| l.split_whitespace().nth(1) == Some("auth"))
        .collect();
    assert_eq!(auth.len(), Stream::DEFAULT.len(), "{}", r.stdout);
    for (line, stream) in auth.iter().zip(Stream::DEFAULT) {
        let says = format!("may list {} (GET {} ", stream.name(), stream.path());
        assert!(line.starts_with("ok") && line.contains(&says), "{line}");
    }
    // `check FILE` after the command works too.
    let r = run(
        vec!["check".into(), "--config".into(), cfg.display().to_string()],
        vec![],
    )
    .await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_a_wrong_token_with_exit_3() {
    let oms = fake().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = config(dir.path(), &oms.base_url(), "wrong-token", "", "");
    let r = run(args(&cfg, &["check"]), vec![]).await;
    assert_eq!(r.code, Some(3), "{}\n{}", r.stdout, r.stderr);
    let auth = check_lines(&r.stdout, "auth");
    assert!(
        auth.starts_with("FAILED") && auth.contains("fix:"),
        "{auth}"
    );
    assert!(check_lines(&r.stdout, "warehouse").starts_with("ok"));
    assert_no_token(&r, "wrong-token", "check");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_an_unreachable_port_with_exit_4() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("http://127.0.0.1:{}", closed_port());
    let cfg = config(dir.path(), &url, "t", "", "");
    let r = run(args(&cfg, &["check"]), vec![]).await;
    assert_eq!(r.code, Some(4), "{}\n{}", r.stdout, r.stderr);
    let connect = check_lines(&r.stdout, "connect");
    assert!(
        connect.starts_with("FAILED") && connect.contains("fix:"),
        "{connect}"
    );
    assert!(check_lines(&r.stdout, "auth").starts_with("skipped"));
    assert_eq!(errors(&r.stderr).len(), 1, "{}", r.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_an_unusable_warehouse_with_exit_5() {
    let oms = fake().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = config(dir.path(), &oms.base_url(), &oms.token(), "", "");
    std::fs::create_dir(dir.path().join("warehouse.db")).expect("mkdir");
    let r = run(args(&cfg, &["check"]), vec![]).await;
    assert_eq!(r.code, Some(5), "{}\n{}", r.stdout, r.stderr);
    let wh = check_lines(&r.stdout, "warehouse");
    assert!(
        wh.starts_with("FAILED") && wh.contains("is a directory"),
        "{wh}"
    );
    assert!(check_lines(&r.stdout, "auth").starts_with("ok"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_a_bad_config_with_exit_2() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = config(dir.path(), "http://127.0.0.1:9", "t", "page_sise = 1", "");
    let r = run(args(&cfg, &["check"]), vec![]).await;
    assert_eq!(r.code, Some(2), "{}\n{}", r.stdout, r.stderr);
    assert!(check_lines(&r.stdout, "config").starts_with("FAILED"));
}

/// PostgreSQL warehouse settings: `warehouse.path` and `warehouse.url` together is a config
/// error naming both (exit 2), PostgreSQL-only keys with a path are named, and a password in a
/// URL never reaches the output, whatever fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warehouse_url_rules_and_a_password_never_printed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let both = config(dir.path(), "http://127.0.0.1:9", "t", "", "");
    let text = std::fs::read_to_string(&both).unwrap().replace(
        "[warehouse]\n",
        "[warehouse]\nurl = \"postgresql://u:hunter2secret@127.0.0.1:9/db\"\n",
    );
    std::fs::write(&both, text).unwrap();
    let r = run(args(&both, &["--once"]), vec![]).await;
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    let e = errors(&r.stderr);
    assert_eq!(e.len(), 1, "{}", r.stderr);
    assert!(
        e[0].contains("warehouse.path") && e[0].contains("warehouse.url"),
        "{}",
        e[0]
    );
    assert!(!r.stderr.contains("hunter2secret"), "{}", r.stderr);

    let schema_with_path = config(dir.path(), "http://127.0.0.1:9", "t", "", "");
    let text = std::fs::read_to_string(&schema_with_path)
        .unwrap()
        .replace("[warehouse]\n", "[warehouse]\nschema = \"x\"\n");
    std::fs::write(&schema_with_path, text).unwrap();
    let r = run(args(&schema_with_path, &["--once"]), vec![]).await;
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(r.stderr.contains("warehouse.schema"), "{}", r.stderr);

    // Nothing listens on port 9: the open fails (exit 5) and says where, without the password.
    let r = run(
        vec![
            "status".into(),
            "--db".into(),
            "postgresql://u:hunter2secret@127.0.0.1:9/db?sslmode=disable".into(),
        ],
        vec![],
    )
    .await;
    assert_eq!(r.code, Some(5), "{}", r.stderr);
    assert!(r.stderr.contains("127.0.0.1:9"), "{}", r.stderr);
    assert!(!r.stderr.contains("hunter2secret"), "{}", r.stderr);
    assert!(!r.stdout.contains("hunter2secret"), "{}", r.stdout);
}

/// `demo --db postgresql://…` runs the whole demo into its own schema and, run again,
/// replaces what the earlier demo made (and nothing else).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_into_postgresql_twice() {
    if !common::backends().contains(&common::Backend::Postgres) {
        return;
    }
    let url = std::env::var(common::PG_ENV).unwrap();
    for _ in 0..2 {
        let r = demo(1500, &url).await;
        assert_eq!(r.code, Some(0), "{}", r.stderr);
        assert!(r.stdout.contains("(schema oms_sync_demo)"), "{}", r.stdout);
        // A fresh schema each time: the first pass inserts every customer.
        let first = r
            .stdout
            .lines()
            .find(|l| l.starts_with("1. first incremental pass"))
            .unwrap_or_default();
        assert!(first.contains(" 1500 inserted"), "{}", r.stdout);
        // "warehouse: N live customers (the OMS lists N), …": the warehouse matches the OMS.
        let summary = r
            .stdout
            .lines()
            .find(|l| l.starts_with("warehouse: "))
            .unwrap_or_default();
        let numbers: Vec<&str> = summary
            .split(|c: char| !c.is_ascii_digit())
            .filter(|w| !w.is_empty())
            .collect();
        assert!(numbers.len() >= 2 && numbers[0] == numbers[1], "{summary}");
    }
}
