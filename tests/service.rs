//! Running as a service, through the real binary against the fake OMS: the daemon loop
//! (signals, retries, no overlap, one writer), run history, `status` while the daemon runs,
//! sd_notify and the watchdog, the metrics endpoint, and the systemd unit files.

mod common;

use std::fs::File;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use fake_oms::{FakeOms, Fault, insert_new, touch_random};
use rusqlite::{Connection, OpenFlags};

const BIN: &str = env!("CARGO_BIN_EXE_oms-sync");

/// A temp dir with a config pointing at `oms`; `api` lines go into `[api]`, `rest` after it.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new(oms: &FakeOms, api: &str, rest: &str) -> Setup {
        let dir = tempfile::tempdir().expect("temp dir");
        let s = Setup { dir };
        s.write_config(&oms.base_url(), &oms.token(), api, rest);
        s
    }

    fn write_config(&self, base_url: &str, token: &str, api: &str, rest: &str) {
        let text = format!(
            "[api]\nbase_url = \"{base_url}\"\ntoken = \"{token}\"\nretry_min_delay = \"10ms\"\nretry_max_delay = \"50ms\"\n{api}\n\n[warehouse]\npath = \"{}\"\n\n{rest}\n",
            self.db().display()
        );
        std::fs::write(self.config(), text).expect("write config");
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("oms-sync.toml")
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("warehouse.db")
    }

    fn spawn(&self, name: &str, args: &[&str], env: &[(&str, &str)]) -> Proc {
        let out = self.dir.path().join(format!("{name}.out"));
        let err = self.dir.path().join(format!("{name}.err"));
        let mut cmd = Command::new(BIN);
        cmd.arg("--config").arg(self.config()).args(args);
        for k in ["RUST_LOG", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
            cmd.env_remove(k);
        }
        cmd.envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(File::create(&out).expect("stdout file"))
            .stderr(File::create(&err).expect("stderr file"));
        let child = cmd.spawn().expect("spawn oms-sync");
        Proc { child, out, err }
    }

    /// Runs to completion (bounded), returning the exit status, stdout and stderr.
    async fn run(&self, name: &str, args: &[&str]) -> (ExitStatus, String, String) {
        let mut p = self.spawn(name, args, &[]);
        let st = p.wait(Duration::from_secs(20)).await;
        (st, p.stdout(), p.stderr())
    }

    fn conn(&self) -> Connection {
        Connection::open_with_flags(self.db(), OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open warehouse read-only")
    }

    fn count(&self, sql: &str) -> i64 {
        if !self.db().exists() {
            return 0;
        }
        // The daemon may be creating the schema: a missing table reads as zero.
        Connection::open_with_flags(self.db(), OpenFlags::SQLITE_OPEN_READ_ONLY)
            .and_then(|c| c.query_row(sql, [], |r| r.get(0)))
            .unwrap_or(0)
    }

    fn runs(&self) -> Vec<Run> {
        let c = self.conn();
        let mut st = c
            .prepare(
                "SELECT kind, status, started_at, finished_at, pages, rows_fetched, rows_inserted,
                        rows_updated, rows_unchanged, rows_deleted, rows_quarantined, mark_before,
                        mark_after, error
                 FROM sync_runs ORDER BY id",
            )
            .expect("query runs");
        st.query_map([], |r| {
            Ok(Run {
                kind: r.get(0)?,
                status: r.get(1)?,
                started_at: r.get(2)?,
                finished_at: r.get(3)?,
                pages: r.get(4)?,
                fetched: r.get(5)?,
                inserted: r.get(6)?,
                updated: r.get(7)?,
                unchanged: r.get(8)?,
                deleted: r.get(9)?,
                quarantined: r.get(10)?,
                mark_before: r.get(11)?,
                mark_after: r.get(12)?,
                error: r.get(13)?,
            })
        })
        .expect("read runs")
        .collect::<Result<_, _>>()
        .expect("runs")
    }
}

#[derive(Debug, Clone)]
#[allow(dead_code)]
struct Run {
    kind: String,
    status: String,
    started_at: String,
    finished_at: Option<String>,
    pages: i64,
    fetched: i64,
    inserted: i64,
    updated: i64,
    unchanged: i64,
    deleted: i64,
    quarantined: i64,
    mark_before: Option<String>,
    mark_after: Option<String>,
    error: Option<String>,
}

/// A child process that is killed if the test ends early.
struct Proc {
    child: Child,
    out: PathBuf,
    err: PathBuf,
}

impl Proc {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(ok.success(), "kill -{sig} failed");
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    async fn wait(&mut self, limit: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(st) = self.exited() {
                return st;
            }
            assert!(
                start.elapsed() < limit,
                "oms-sync still running after {limit:?}; stderr:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `f` until it holds; fails with `what` after `limit`.
async fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn assert_no_panic(stderr: &str) {
    assert!(!stderr.contains("panicked"), "panic in stderr:\n{stderr}");
    assert!(
        !stderr.contains("RUST_BACKTRACE"),
        "backtrace hint:\n{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_request_stops_promptly_keeping_committed_pages() {
    let oms = common::fake(common::distinct(100)).await;
    let s = Setup::new(&oms, "page_size = 10\ntimeout = \"60s\"", "");
    // Page 1 is served at once; page 2 hangs far longer than the test may take.
    oms.push_faults([
        Fault::Delay(Duration::from_millis(1)),
        Fault::Delay(Duration::from_secs(60)),
    ]);
    let mut daemon = s.spawn("daemon", &[], &[]);
    wait_until(
        "page 1 committed and page 2 requested",
        Duration::from_secs(15),
        || s.count("SELECT count(*) FROM customers") == 10 && oms.total_requests() >= 2,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sent = Instant::now();
    daemon.signal("TERM");
    let st = daemon.wait(Duration::from_secs(5)).await;
    let took = sent.elapsed();
    let stderr = daemon.stderr();
    assert_eq!(st.code(), Some(0), "stderr:\n{stderr}");
    assert!(took < Duration::from_secs(3), "stopping took {took:?}");
    assert_no_panic(&stderr);
    // Exactly the committed page is kept, with its checkpoint, and the run says so.
    assert_eq!(s.count("SELECT count(*) FROM customers"), 10);
    let runs = s.runs();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].status, "cancelled");
    assert_eq!(runs[0].pages, 1);
    assert_eq!(runs[0].fetched, 10);
    let tenth = oms.with_store(|st| {
        let mut all = st.snapshot();
        all.sort_by_key(|c| c.modified_date);
        oms_sync::timefmt::canonical(&all[9].modified_date)
    });
    let mark: String = s
        .conn()
        .query_row("SELECT mark_modified_date FROM sync_state", [], |r| {
            r.get(0)
        })
        .expect("a checkpoint");
    assert_eq!(mark, tenth);
    // The next run continues from there and ends in step.
    oms.clear_faults();
    let (st, _, err) = s.run("once", &["--once"]).await;
    assert_eq!(st.code(), Some(0), "{err}");
    common::assert_in_step(&oms, &common::rows(&s.db()), true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_between_passes_stops_at_once() {
    let oms = common::fake(common::distinct(20)).await;
    let s = Setup::new(&oms, "page_size = 50", "[sync]\ninterval = \"1h\"");
    let mut daemon = s.spawn("daemon", &[], &[]);
    wait_until("first pass", Duration::from_secs(15), || {
        s.count("SELECT count(*) FROM sync_runs WHERE status = 'succeeded'") == 1
    })
    .await;
    let sent = Instant::now();
    daemon.signal("INT");
    let st = daemon.wait(Duration::from_secs(5)).await;
    assert_eq!(st.code(), Some(0), "{}", daemon.stderr());
    assert!(sent.elapsed() < Duration::from_secs(2));
}

/// Issue 11.8: Ctrl-C during `--once` exits 6 with one line that says it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_during_once_exits_6_with_one_plain_line() {
    let oms = common::fake(common::distinct(30)).await;
    let s = Setup::new(&oms, "page_size = 10\ntimeout = \"60s\"", "");
    oms.push_faults([
        Fault::Delay(Duration::from_millis(1)),
        Fault::Delay(Duration::from_secs(60)),
    ]);
    let mut once = s.spawn("once", &["--once"], &[]);
    wait_until("page 2 requested", Duration::from_secs(15), || {
        oms.total_requests() >= 2
    })
    .await;
    once.signal("INT");
    let st = once.wait(Duration::from_secs(5)).await;
    let stderr = once.stderr();
    assert_eq!(st.code(), Some(6), "{stderr}");
    assert_no_panic(&stderr);
    let errs: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(errs.len(), 1, "{stderr}");
    assert_eq!(errs[0].matches("committed pages").count(), 1, "{}", errs[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_instance_is_refused_and_status_works_while_the_daemon_runs() {
    let oms = common::fake(common::distinct(120)).await;
    let s = Setup::new(&oms, "page_size = 50", "[sync]\ninterval = \"1h\"");
    let mut daemon = s.spawn("daemon", &[], &[]);
    wait_until("first pass", Duration::from_secs(15), || {
        s.count("SELECT count(*) FROM sync_runs WHERE status = 'succeeded'") == 1
    })
    .await;

    // A second writer on the same warehouse: exit 5 and one clear line.
    let (st, _, err) = s.run("second", &["--once"]).await;
    assert_eq!(st.code(), Some(5), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].contains("in use by another oms-sync process") && lines[0].contains("fix:"),
        "{err}"
    );
    assert_no_panic(&err);

    // status --json reads the warehouse while the daemon holds the lock.
    let (st, out, err) = s.run("status-json", &["status", "--json"]).await;
    assert_eq!(st.code(), Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("status --json is JSON");
    let newest = oms.with_store(|st| {
        st.max_modified_date()
            .map(|t| oms_sync::timefmt::canonical(&t))
    });
    assert_eq!(v["total"]["live"], 120);
    let v = &v["streams"]["customers"];
    assert_eq!(v["live"], 120);
    assert_eq!(v["deleted"], 0);
    assert_eq!(v["quarantined"], 0);
    assert_eq!(v["checkpoint"]["modified_date"].as_str(), newest.as_deref());
    assert_eq!(v["newest_modified_date"].as_str(), newest.as_deref());
    assert!(v["lag_seconds"].as_f64().is_some_and(|l| l > 0.0), "{v}");
    let since = v["since_last_success_seconds"]
        .as_f64()
        .expect("since last success");
    assert!((0.0..60.0).contains(&since), "{since}");
    assert!(v["last_success_at"].is_string());
    assert!(v["backfill_in_progress"].is_null());
    let runs = v["recent_runs"].as_array().expect("recent runs");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["kind"], "incremental");
    assert_eq!(runs[0]["status"], "succeeded");
    assert_eq!(runs[0]["rows_inserted"], 120);
    // Fetched also counts the few rows re-read at each page boundary (unchanged).
    assert_eq!(
        runs[0]["rows_fetched"].as_i64(),
        Some(120 + runs[0]["rows_unchanged"].as_i64().unwrap_or(-1))
    );
    assert_eq!(runs[0]["pages"], 3);

    // And for people.
    let (st, out, err) = s.run("status", &["status"]).await;
    assert_eq!(st.code(), Some(0), "{err}");
    for needle in ["checkpoint", "120 live, 0 deleted", "lag", "succeeded"] {
        assert!(out.contains(needle), "{needle:?} missing in:\n{out}");
    }
    // The daemon was not disturbed.
    assert!(daemon.exited().is_none(), "{}", daemon.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_history_has_the_figures_of_each_pass() {
    let oms = common::fake(common::distinct(250)).await;
    // No lookback: the figures below count only the re-reads at page boundaries (all 250
    // synthetic customers fall inside the default window, which would re-read every one).
    let s = Setup::new(&oms, "page_size = 100", "[sync]\nlookback = \"0s\"");
    let (st, _, err) = s.run("once1", &["--once"]).await;
    assert_eq!(st.code(), Some(0), "{err}");
    let (touched, added) = oms.with_store(|st| {
        (
            touch_random(st, 0.1, 11).len() as i64,
            insert_new(st, 30, 12).len() as i64,
        )
    });
    assert_eq!(touched, 25);
    let (st, _, err) = s.run("once2", &["--once"]).await;
    assert_eq!(st.code(), Some(0), "{err}");
    let runs = s.runs();
    assert_eq!(runs.len(), 2, "{runs:?}");
    let (a, b) = (&runs[0], &runs[1]);
    assert_eq!(a.kind, "incremental");
    assert_eq!(a.status, "succeeded");
    assert_eq!((a.pages, a.inserted, a.updated, a.deleted), (3, 250, 0, 0));
    // Fetched also counts the rows re-read at each page boundary (unchanged ones).
    assert_eq!(a.fetched, 250 + a.unchanged);
    assert_eq!(a.mark_before.as_deref(), Some("start"));
    assert!(a.finished_at.is_some() && a.error.is_none());
    assert_eq!(b.status, "succeeded");
    assert_eq!(
        b.mark_before, a.mark_after,
        "run 2 starts where run 1 ended"
    );
    assert_eq!((b.inserted, b.updated, b.deleted), (added, touched, 0));
    // Fetched rows are the changes plus the few re-read rows at page boundaries.
    assert_eq!(
        b.fetched,
        b.inserted + b.updated + b.unchanged + b.quarantined
    );
    assert!(b.unchanged <= b.pages, "{b:?}");
    assert!(b.started_at >= a.finished_at.clone().unwrap_or_default());
    common::assert_in_step(&oms, &common::rows(&s.db()), true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_passes_are_retried_and_passes_never_overlap() {
    let oms = common::fake(common::distinct(60)).await;
    let s = Setup::new(
        &oms,
        "page_size = 20\nmax_retries = 0",
        "[sync]\ninterval = \"200ms\"",
    );
    // Two passes fail outright (no retries allowed), later ones are slow but fine.
    oms.push_faults([Fault::html(502), Fault::html(503)]);
    oms.push_faults((0..6).map(|_| Fault::Delay(Duration::from_millis(150))));
    let mut daemon = s.spawn("daemon", &[], &[]);
    wait_until("two successful passes", Duration::from_secs(20), || {
        s.count("SELECT count(*) FROM sync_runs WHERE status = 'succeeded'") >= 2
    })
    .await;
    daemon.signal("TERM");
    let st = daemon.wait(Duration::from_secs(5)).await;
    let stderr = daemon.stderr();
    assert_eq!(st.code(), Some(0), "{stderr}");
    let runs = s.runs();
    assert_eq!(runs[0].status, "failed", "{runs:?}");
    assert!(runs[0].error.as_deref().is_some_and(|e| e.contains("502")));
    assert_eq!(runs[1].status, "failed", "{runs:?}");
    assert!(
        runs.iter()
            .any(|r| r.status == "succeeded" && r.inserted == 60)
    );
    // One loop, one writer: each pass ends before the next starts.
    for w in runs.windows(2) {
        let end = w[0].finished_at.clone().expect("finished");
        assert!(w[1].started_at >= end, "overlap: {w:?}");
    }
    assert_eq!(stderr.matches("pass failed").count(), 2, "{stderr}");
    assert_no_panic(&stderr);
    common::assert_in_step(&oms, &common::rows(&s.db()), true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_exits_3_on_authentication_failure() {
    let oms = common::fake(common::distinct(10)).await;
    let s = Setup::new(&oms, "", "[sync]\ninterval = \"100ms\"");
    s.write_config(
        &oms.base_url(),
        "not-the-token",
        "",
        "[sync]\ninterval = \"100ms\"",
    );
    let mut daemon = s.spawn("daemon", &[], &[]);
    let st = daemon.wait(Duration::from_secs(10)).await;
    let stderr = daemon.stderr();
    assert_eq!(st.code(), Some(3), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error:") && last.contains("authentication failed"),
        "{stderr}"
    );
    assert_no_panic(&stderr);
}

type NotifyLog = std::sync::Arc<std::sync::Mutex<Vec<(Instant, String)>>>;

/// Receives sd_notify datagrams on a thread, stamping each on arrival, until `stop` is set.
fn listen_notify(
    sock: UnixDatagram,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> NotifyLog {
    let log = NotifyLog::default();
    let out = log.clone();
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .expect("read timeout");
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            if let Ok(n) = sock.recv(&mut buf)
                && let Ok(mut l) = out.lock()
            {
                l.push((
                    Instant::now(),
                    String::from_utf8_lossy(&buf[..n]).into_owned(),
                ));
            }
        }
    });
    log
}

fn snapshot(log: &NotifyLog) -> Vec<(Instant, String)> {
    log.lock().map(|l| l.clone()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_notify_ready_status_watchdog_and_stopping() {
    let oms = common::fake(common::distinct(40)).await;
    let s = Setup::new(
        &oms,
        "page_size = 20\ntimeout = \"30s\"",
        "[sync]\ninterval = \"300ms\"",
    );
    let sock_path = s.dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).expect("bind notify socket");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let notes = listen_notify(sock, stop.clone());
    let sock_env = sock_path.display().to_string();
    // A 600 ms watchdog: pings every 300 ms while the loop is alive.
    let mut daemon = s.spawn(
        "daemon",
        &[],
        &[("NOTIFY_SOCKET", &sock_env), ("WATCHDOG_USEC", "600000")],
    );
    let has = |log: &[(Instant, String)], m: &str| log.iter().any(|(_, l)| l.contains(m));
    wait_until(
        "READY, a pass status and pings",
        Duration::from_secs(15),
        || {
            let log = snapshot(&notes);
            has(&log, "STATUS=last pass succeeded")
                && log.iter().filter(|(_, l)| l.contains("WATCHDOG=1")).count() >= 3
        },
    )
    .await;
    let log = snapshot(&notes);
    let first = &log[0].1;
    assert!(first.contains("READY=1"), "READY first: {log:?}");
    let status = log
        .iter()
        .find(|(_, l)| l.contains("STATUS=last pass succeeded"))
        .map(|(_, l)| l.clone())
        .unwrap_or_default();
    assert!(
        status.contains(" fetched, 40 inserted, 0 updated"),
        "{status}"
    );

    // The loop stalls (a request hangs for 4 s): the heartbeat goes stale and pings stop.
    oms.push_fault(Fault::Delay(Duration::from_secs(4)));
    let before = oms.total_requests();
    wait_until("the hanging request", Duration::from_secs(5), || {
        oms.total_requests() > before
    })
    .await;
    let hang_started = Instant::now();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let log = snapshot(&notes);
    let quiet_from = hang_started + Duration::from_millis(1200);
    let pings_while_stalled = log
        .iter()
        .filter(|(t, l)| *t > quiet_from && l.contains("WATCHDOG=1"))
        .count();
    assert_eq!(pings_while_stalled, 0, "{log:?}");
    assert!(
        daemon.stderr().contains("no longer feeding the watchdog"),
        "{}",
        daemon.stderr()
    );
    // Once the request completes the loop is alive again and pings resume.
    let resumed_after = Instant::now() + Duration::from_millis(1600);
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let log = snapshot(&notes);
    assert!(
        log.iter()
            .any(|(t, l)| *t > resumed_after && l.contains("WATCHDOG=1")),
        "{log:?}"
    );

    daemon.signal("TERM");
    let st = daemon.wait(Duration::from_secs(5)).await;
    assert_eq!(st.code(), Some(0), "{}", daemon.stderr());
    // The last datagram may still be in flight to the listener thread.
    tokio::time::sleep(Duration::from_millis(150)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let log = snapshot(&notes);
    assert!(
        log.last().is_some_and(|(_, l)| l.contains("STOPPING=1")),
        "{log:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_endpoint_counts_passes_rows_and_requests() {
    let oms = common::fake(common::distinct(70)).await;
    // A free port: bind, note it, release it for the daemon.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let s = Setup::new(
        &oms,
        "page_size = 50\nmax_retries = 2",
        &format!("[sync]\ninterval = \"1h\"\n\n[metrics]\nlisten = \"127.0.0.1:{port}\""),
    );
    // One 500 answer, retried within the request's budget.
    oms.push_fault(Fault::html(500));
    let mut daemon = s.spawn("daemon", &[], &[]);
    wait_until("first pass", Duration::from_secs(15), || {
        s.count("SELECT count(*) FROM sync_runs WHERE status = 'succeeded'") == 1
    })
    .await;
    let url = format!("http://127.0.0.1:{port}/metrics");
    let client = reqwest::Client::new();
    // The pass is committed before its observer runs: give the counters a moment.
    let mut text = String::new();
    for _ in 0..50 {
        let resp = client.get(&url).send().await.expect("GET /metrics");
        assert!(resp.status().is_success());
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
        text = resp.text().await.expect("metrics body");
        if text.contains("oms_sync_passes_total{stream=\"customers\",outcome=\"succeeded\"} 1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let v = |series: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{series} missing in\n{text}"))
    };
    assert_eq!(
        v("oms_sync_passes_total{stream=\"customers\",outcome=\"succeeded\"}"),
        1.0
    );
    assert_eq!(
        v("oms_sync_passes_total{stream=\"customers\",outcome=\"failed\"}"),
        0.0
    );
    assert_eq!(
        v("oms_sync_rows_total{stream=\"customers\",kind=\"inserted\"}"),
        70.0
    );
    // Fetched also counts the rows re-read at page boundaries (unchanged ones).
    assert_eq!(
        v("oms_sync_rows_total{stream=\"customers\",kind=\"fetched\"}"),
        70.0 + v("oms_sync_rows_total{stream=\"customers\",kind=\"unchanged\"}")
    );
    assert_eq!(
        v("oms_sync_rows_total{stream=\"customers\",kind=\"updated\"}"),
        0.0
    );
    assert_eq!(
        v("oms_sync_rows_total{stream=\"customers\",kind=\"deleted\"}"),
        0.0
    );
    assert_eq!(
        v("oms_sync_rows_total{stream=\"customers\",kind=\"quarantined\"}"),
        0.0
    );
    // 2 pages + the final short page end the walk; plus the 500 that was retried.
    let attempts = oms.total_requests() as f64;
    assert_eq!(v("oms_sync_request_duration_seconds_count"), attempts);
    assert_eq!(v("oms_sync_request_errors_total{status=\"500\"}"), 1.0);
    // Series an alert reads exist before their first error (issue 11.9).
    assert_eq!(v("oms_sync_request_errors_total{status=\"503\"}"), 0.0);
    assert_eq!(
        v("oms_sync_request_errors_total{status=\"transport\"}"),
        0.0
    );
    let now = chrono::Utc::now().timestamp() as f64;
    let last = v("oms_sync_last_success_timestamp_seconds{stream=\"customers\"}");
    assert!((now - 60.0..=now + 1.0).contains(&last), "{last} vs {now}");
    // The fake's customers are dated 2024: the lag is large.
    assert!(v("oms_sync_lag_seconds{stream=\"customers\"}") > 86_400.0);
    // Every per-stream series of every stream carries its stream label, and no unlabelled one
    // could hide a stalled stream behind another.
    for stream in oms_sync::stream::Stream::DEFAULT {
        let label = format!("{{stream=\"{}\"", stream.name());
        for metric in [
            "oms_sync_last_success_timestamp_seconds",
            "oms_sync_passes_total",
        ] {
            assert!(
                text.contains(&format!("{metric}{label}")),
                "{metric}{label} in\n{text}"
            );
        }
    }
    for metric in [
        "oms_sync_last_success_timestamp_seconds",
        "oms_sync_lag_seconds",
        "oms_sync_passes_total",
        "oms_sync_rows_total",
    ] {
        for line in text.lines().filter(|l| l.starts_with(metric)) {
            assert!(line.contains("{stream=\""), "unlabelled: {line}");
        }
    }
    daemon.signal("TERM");
    let st = daemon.wait(Duration::from_secs(5)).await;
    assert_eq!(st.code(), Some(0), "{}", daemon.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_on_a_terminal_shows_a_bar_with_rate_and_eta() {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: `script` (util-linux) is not installed");
        return;
    }
    let oms = common::fake(common::distinct(60)).await;
    let s = Setup::new(&oms, "page_size = 10", "[log]\nlevel = \"warn\"");
    // Slow pages so the bar is drawn a few times before it is cleared.
    oms.push_faults((0..8).map(|_| Fault::Delay(Duration::from_millis(150))));
    let cmd = format!("{BIN} --config {} --backfill", s.config().display());
    let typescript = s.dir.path().join("typescript");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("script")
            .args(["-q", "-e", "-c", &cmd])
            .arg(&typescript)
            .env("TERM", "xterm")
            .stdin(Stdio::null())
            .output()
    })
    .await
    .expect("join")
    .expect("run script");
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{shown}");
    // Total from the API's count, rows per second and an ETA.
    assert!(shown.contains("/60 rows"), "{shown}");
    assert!(shown.contains("/s"), "{shown}");
    assert!(shown.contains("ETA"), "{shown}");
    // The rate is a whole number ("3,774/s"), not indicatif's "3,773.8707/s" (issue 11.8).
    for part in shown
        .split("/s")
        .filter(|p| p.ends_with(|c: char| c.is_ascii_digit()))
    {
        let rate = part.rsplit(' ').next().unwrap_or_default();
        assert!(!rate.contains('.'), "fractional rate {rate:?} in {shown}");
    }
    common::assert_in_step(&oms, &common::rows(&s.db()), true);
}

/// Where the unit files live in the source tree.
fn unit_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd")
}

const UNITS: [&str; 3] = [
    "oms-sync.service",
    "oms-sync-backfill.service",
    "oms-sync-backfill.timer",
];

/// `section -> [(key, value)]` of a unit file, in order.
fn parse_unit(text: &str) -> Vec<(String, Vec<(String, String)>)> {
    let mut out: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            out.push((name.to_string(), Vec::new()));
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("line {}: not key=value: {line}", n + 1));
        let section = out
            .last_mut()
            .unwrap_or_else(|| panic!("line {}: key outside a section", n + 1));
        section.1.push((k.trim().to_string(), v.trim().to_string()));
    }
    out
}

fn get<'a>(unit: &'a [(String, Vec<(String, String)>)], section: &str, key: &str) -> Vec<&'a str> {
    unit.iter()
        .filter(|(s, _)| s == section)
        .flat_map(|(_, kv)| kv.iter())
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect()
}

#[test]
fn unit_files_have_the_required_settings() {
    let read = |name: &str| {
        std::fs::read_to_string(unit_dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    let hardening = [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("UMask", "0077"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("CapabilityBoundingSet", ""),
        ("SystemCallArchitectures", "native"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"),
        ("ProtectControlGroups", "yes"),
        ("RestrictNamespaces", "yes"),
        ("LockPersonality", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("RestrictRealtime", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("ProtectClock", "yes"),
        ("ProtectHostname", "yes"),
        ("ProtectProc", "invisible"),
        ("ProcSubset", "pid"),
        ("StateDirectory", "oms-sync"),
        ("StateDirectoryMode", "0700"),
        ("LoadCredential", "oms-token:/etc/oms-sync/token"),
        ("User", "oms-sync"),
    ];
    for name in ["oms-sync.service", "oms-sync-backfill.service"] {
        let u = parse_unit(&read(name));
        let sections: Vec<&str> = u.iter().map(|(s, _)| s.as_str()).collect();
        assert!(
            sections.starts_with(&["Unit", "Service"]),
            "{name}: {sections:?}"
        );
        for (k, v) in hardening {
            assert_eq!(get(&u, "Service", k), vec![v], "{name}: {k}");
        }
        assert!(
            get(&u, "Service", "SystemCallFilter").contains(&"@system-service"),
            "{name}"
        );
        let exec = get(&u, "Service", "ExecStart");
        assert_eq!(exec.len(), 1, "{name}");
        let mut words = exec[0].split_whitespace();
        assert_eq!(words.next(), Some("/usr/bin/oms-sync"), "{name}");
        assert_eq!(words.next(), Some("--config"), "{name}");
        assert!(
            words
                .next()
                .is_some_and(|p| p.starts_with("/etc/oms-sync/"))
        );
    }
    let d = parse_unit(&read("oms-sync.service"));
    for (k, v) in [
        ("Type", "notify"),
        ("Restart", "on-failure"),
        ("RestartSec", "30"),
        // Configuration, authentication, and systemd's CREDENTIALS (token file unreadable).
        ("RestartPreventExitStatus", "2 3 243"),
    ] {
        assert_eq!(get(&d, "Service", k), vec![v], "oms-sync.service: {k}");
    }
    assert_eq!(get(&d, "Service", "WatchdogSec").len(), 1);
    assert_eq!(get(&d, "Install", "WantedBy"), vec!["multi-user.target"]);
    let b = parse_unit(&read("oms-sync-backfill.service"));
    assert_eq!(get(&b, "Service", "Type"), vec!["oneshot"]);
    assert!(get(&b, "Service", "ExecStart")[0].ends_with(" --backfill"));
    // Only one writer: the backfill replaces the daemon and hands back to it.
    assert_eq!(get(&b, "Unit", "Conflicts"), vec!["oms-sync.service"]);
    assert!(get(&b, "Unit", "After")[0].contains("oms-sync.service"));
    assert_eq!(get(&b, "Unit", "OnSuccess"), vec!["oms-sync.service"]);
    assert_eq!(get(&b, "Unit", "OnFailure"), vec!["oms-sync.service"]);
    let t = parse_unit(&read("oms-sync-backfill.timer"));
    assert_eq!(get(&t, "Timer", "Persistent"), vec!["true"]);
    assert_eq!(get(&t, "Timer", "RandomizedDelaySec").len(), 1);
    assert!(get(&t, "Timer", "OnCalendar")[0].starts_with("Sun"));
    assert_eq!(get(&t, "Install", "WantedBy"), vec!["timers.target"]);
}

/// `.ci/run` installs it; elsewhere the unit tests that need it say they are skipped.
fn systemd_analyze_installed() -> bool {
    match Command::new("systemd-analyze").arg("--version").output() {
        Ok(probe) => {
            assert!(probe.status.success(), "systemd-analyze --version failed");
            true
        }
        Err(_) => {
            eprintln!("skipped: systemd-analyze is not installed (the parser test still runs)");
            false
        }
    }
}

#[test]
fn unit_files_pass_systemd_analyze_verify() {
    if !systemd_analyze_installed() {
        return;
    }
    // verify needs ExecStart binaries to exist: point them at the binary under test.
    let dir = tempfile::tempdir().expect("temp dir");
    for name in UNITS {
        let text = std::fs::read_to_string(unit_dir().join(name)).expect("read unit");
        std::fs::write(
            dir.path().join(name),
            text.replace("/usr/bin/oms-sync", BIN),
        )
        .expect("write unit");
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg("--man=no")
        .args(UNITS.iter().map(|u| dir.path().join(u)))
        .output()
        .expect("run systemd-analyze verify");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // Unknown or misspelt keys are only warnings: there must be none for our files.
    let ours: Vec<&str> = stderr
        .lines()
        .filter(|l| UNITS.iter().any(|u| l.contains(u)))
        .collect();
    assert!(ours.is_empty(), "{stderr}");
}

/// The hardening holds up: `systemd-analyze security` rates both services at most 1.5 of 10
/// ("OK"), offline from the files, as a real install would be rated.
#[test]
fn unit_files_are_hardened_per_systemd_analyze_security() {
    if !systemd_analyze_installed() {
        return;
    }
    for name in ["oms-sync.service", "oms-sync-backfill.service"] {
        let out = Command::new("systemd-analyze")
            .args(["security", "--offline=true", "--no-pager", "--threshold=15"])
            .arg(unit_dir().join(name))
            .output()
            .expect("run systemd-analyze security");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let overall = stdout
            .lines()
            .find(|l| l.contains("Overall exposure level"))
            .unwrap_or("(no overall line)");
        eprintln!("{name}: {overall}");
        assert!(
            out.status.success(),
            "{name} above 1.5: {overall}\n{stdout}{stderr}"
        );
    }
}
