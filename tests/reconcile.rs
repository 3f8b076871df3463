//! The daemon's scheduled reconciliation, through the real binary against the fake OMS: it
//! runs the backfill in slices between incremental passes (changes keep arriving while a slow
//! one runs, deletions are still marked), its schedule comes from the warehouse (a restart
//! keeps it, "0s" turns it off), its progress shows in `status` and `/metrics`, and
//! `--backfill` by hand beside the daemon says what to do instead.

mod common;

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fake_oms::{FakeCustomer, FakeOms};
use rusqlite::{Connection, OpenFlags};

const BIN: &str = env!("CARGO_BIN_EXE_oms-sync");

/// A temp dir with a config pointing at `oms`, `[api]` lines `api`, then `rest`.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new(oms: &FakeOms, api: &str, rest: &str) -> Setup {
        let dir = tempfile::tempdir().expect("temp dir");
        let s = Setup { dir };
        let text = format!(
            "[api]\nbase_url = \"{}\"\ntoken = \"{}\"\nretry_min_delay = \"10ms\"\nretry_max_delay = \"50ms\"\n{api}\n\n[warehouse]\npath = \"{}\"\n\n{rest}\n",
            oms.base_url(),
            oms.token(),
            s.db().display()
        );
        std::fs::write(s.config(), text).expect("write config");
        s
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("oms-sync.toml")
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("warehouse.db")
    }

    fn spawn(&self, name: &str, args: &[&str]) -> Proc {
        let err = self.dir.path().join(format!("{name}.err"));
        let out = self.dir.path().join(format!("{name}.out"));
        let child = Command::new(BIN)
            .arg("--config")
            .arg(self.config())
            .args(args)
            .env_remove("RUST_LOG")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(File::create(&out).expect("stdout file"))
            .stderr(File::create(&err).expect("stderr file"))
            .spawn()
            .expect("spawn oms-sync");
        Proc { child, out, err }
    }

    /// Runs to completion: exit code, stdout, stderr.
    async fn run(&self, name: &str, args: &[&str]) -> (Option<i32>, String, String) {
        let mut p = self.spawn(name, args);
        let start = Instant::now();
        let st = loop {
            if let Some(st) = p.child.try_wait().expect("try_wait") {
                break st;
            }
            assert!(start.elapsed() < Duration::from_secs(20), "{name} hangs");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        (st.code(), p.stdout(), p.stderr())
    }

    /// One integer from the warehouse; 0 while it or the table does not exist yet.
    fn count(&self, sql: &str) -> i64 {
        Connection::open_with_flags(self.db(), OpenFlags::SQLITE_OPEN_READ_ONLY)
            .and_then(|c| c.query_row(sql, [], |r| r.get(0)))
            .unwrap_or(0)
    }

    fn write(&self, sql: &str) {
        Connection::open(self.db())
            .and_then(|c| c.execute_batch(sql))
            .expect("write the warehouse");
    }

    async fn status_json(&self) -> serde_json::Value {
        let (code, out, err) = self.run("status", &["status", "--json"]).await;
        assert_eq!(code, Some(0), "{err}");
        serde_json::from_str(&out).expect("status --json is JSON")
    }
}

/// A child process killed if the test ends early.
struct Proc {
    child: Child,
    out: PathBuf,
    err: PathBuf,
}

impl Proc {
    fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }
    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }
    fn running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Backfill runs that finished (the warehouse's record of a completed reconciliation).
const FINISHED: &str =
    "SELECT count(*) FROM sync_runs WHERE kind = 'backfill' AND status = 'succeeded'";
/// Slices that stopped at their time budget with ranges left.
const PAUSED: &str = "SELECT count(*) FROM sync_runs WHERE kind = 'backfill' AND status = 'cancelled' AND error LIKE 'paused%'";
const IN_PROGRESS: &str = "SELECT count(*) FROM backfill_state WHERE stream = 'customers'";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

async fn scrape(port: u16) -> String {
    reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics body")
}

/// The value of the series `name{stream="customers"}` in a scrape.
fn series(text: &str, name: &str) -> Option<f64> {
    let prefix = format!("{name}{{stream=\"customers\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

/// The promise of issue "freshness never stalls": while a slow reconciliation runs (each OMS
/// request takes 80 ms, the backfill ~4 s, far longer than the 1 s interval), a customer
/// changed and one created in the OMS reach the warehouse before it ends; it still finishes,
/// marks the customer the OMS stopped listing as deleted, and reports its progress.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_changes_arrive_while_a_slow_reconciliation_runs() {
    let oms = common::fake(common::distinct(1000)).await;
    let port = free_port();
    let s = Setup::new(
        &oms,
        "page_size = 10\nconcurrency = 2",
        &format!(
            "[sync]\ninterval = \"1s\"\nlookback = \"0s\"\nreconcile_every = \"1h\"\n\n[metrics]\nlisten = \"127.0.0.1:{port}\""
        ),
    );
    let (code, _, err) = s.run("backfill", &["--backfill"]).await;
    assert_eq!(code, Some(0), "{err}");
    // The last reconciliation ended two hours ago: with reconcile_every = 1h, one is due.
    s.write(
        "UPDATE sync_runs SET started_at = '2000-01-01T00:00:00.000000Z', finished_at = '2000-01-01T00:00:01.000000Z'",
    );
    oms.with_store(|st| assert!(st.remove(77)));
    oms.knobs(|k| k.latency = Duration::from_millis(80));

    let mut daemon = s.spawn("daemon", &[]);
    wait_until(
        "a reconciliation slice paused",
        Duration::from_secs(15),
        || s.count(PAUSED) >= 1,
    )
    .await;
    assert_eq!(s.count(IN_PROGRESS), 1, "{}", daemon.stderr());

    // Progress in status (per stream) and in the metrics while it runs.
    let v = s.status_json().await;
    let b = &v["streams"]["customers"]["backfill_in_progress"];
    assert_eq!(b["ranges"], 2, "{v}");
    let (code, text, err) = s.run("status-text", &["status"]).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(
        text.contains("backfill    in progress") && text.contains("the daemon resumes it"),
        "{text}"
    );
    let m = scrape(port).await;
    assert_eq!(series(&m, "oms_sync_reconcile_ranges"), Some(2.0), "{m}");
    assert!(
        series(&m, "oms_sync_reconcile_ranges_done").is_some(),
        "{m}"
    );
    assert!(
        series(&m, "oms_sync_reconcile_pages_total").is_some_and(|p| p >= 1.0),
        "{m}"
    );

    // Changes made now reach the warehouse while the reconciliation is still under way.
    let now = chrono::Utc::now();
    oms.with_store(|st| {
        assert!(st.touch(5, now));
        st.upsert(FakeCustomer::new(10_000, now));
    });
    wait_until(
        "the changes in the warehouse",
        Duration::from_secs(10),
        || {
            s.count("SELECT count(*) FROM customers WHERE id = 10000") == 1
                && s.count("SELECT count(*) FROM customers WHERE id = 5 AND modified_date > '2025'")
                    == 1
        },
    )
    .await;
    assert_eq!(
        s.count(IN_PROGRESS),
        1,
        "the reconciliation ended before the changes arrived: it did not run beside them"
    );
    assert_eq!(s.count(FINISHED), 1);

    // It ends, marking what the OMS no longer lists, and the schedule moves on.
    wait_until(
        "the reconciliation to finish",
        Duration::from_secs(20),
        || s.count(FINISHED) == 2,
    )
    .await;
    assert_eq!(s.count(IN_PROGRESS), 0);
    assert_eq!(
        s.count("SELECT count(*) FROM customers WHERE deleted_at IS NOT NULL"),
        1
    );
    assert_eq!(
        s.count("SELECT count(*) FROM customers WHERE id = 77 AND deleted_at IS NOT NULL"),
        1
    );
    assert_eq!(
        s.count("SELECT count(*) FROM customers WHERE deleted_at IS NULL"),
        1000
    );
    let m = scrape(port).await;
    assert_eq!(
        series(&m, "oms_sync_reconcile_ranges_done"),
        Some(2.0),
        "{m}"
    );
    assert!(
        series(&m, "oms_sync_last_reconcile_timestamp_seconds")
            .is_some_and(|t| t > now.timestamp() as f64 - 1.0),
        "{m}"
    );
    let err = daemon.stderr();
    assert!(err.contains("reconciliation slice ended"), "{err}");
    assert!(err.contains("reconciliation finished"), "{err}");
    assert!(daemon.running(), "{err}");
}

/// When a reconciliation is due comes from the warehouse's last finished backfill, so a
/// restart neither brings it forward nor pushes it back; "0s" turns it off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schedule_is_read_from_the_warehouse() {
    let oms = common::fake(common::distinct(30)).await;
    let s = Setup::new(&oms, "page_size = 10", "[sync]\ninterval = \"200ms\"");
    let (code, _, err) = s.run("backfill", &["--backfill"]).await;
    assert_eq!(code, Some(0), "{err}");
    // The last reconciliation finished two hours ago.
    s.write(&format!(
        "UPDATE sync_runs SET finished_at = '{}' WHERE kind = 'backfill'",
        oms_sync::timefmt::canonical(&(chrono::Utc::now() - chrono::TimeDelta::hours(2)))
    ));
    let incremental = "SELECT count(*) FROM sync_runs WHERE kind = 'incremental'";

    // Every three hours: not due, several passes run and no backfill; off: likewise; every
    // hour: due at once, though this daemon has just started.
    for (every, due) in [("3h", false), ("0s", false), ("1h", true)] {
        let before = s.count(incremental);
        let cfg = std::fs::read_to_string(s.config()).expect("config");
        let cfg = match cfg.find("reconcile_every") {
            Some(i) => cfg[..i].to_string(),
            None => cfg,
        };
        std::fs::write(s.config(), format!("{cfg}reconcile_every = \"{every}\"\n"))
            .expect("config");
        let mut daemon = s.spawn("daemon", &[]);
        if due {
            wait_until("the due reconciliation", Duration::from_secs(15), || {
                s.count(FINISHED) == 2
            })
            .await;
        } else {
            wait_until("three passes", Duration::from_secs(15), || {
                s.count(incremental) >= before + 3
            })
            .await;
            assert_eq!(s.count(FINISHED), 1, "every {every}: {}", daemon.stderr());
            assert_eq!(s.count(PAUSED), 0, "every {every}");
        }
        assert!(daemon.running(), "{}", daemon.stderr());
    }
}

/// `--backfill` by hand while the daemon holds the warehouse: one line saying the daemon
/// reconciles by itself, and how to reconcile now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_beside_the_daemon_says_what_to_do() {
    let oms = common::fake(common::distinct(20)).await;
    let s = Setup::new(&oms, "", "[sync]\ninterval = \"1h\"");
    let mut daemon = s.spawn("daemon", &[]);
    wait_until("first pass", Duration::from_secs(15), || {
        s.count("SELECT count(*) FROM sync_runs WHERE status = 'succeeded'") == 1
    })
    .await;
    let (code, _, err) = s.run("by-hand", &["--backfill"]).await;
    assert_eq!(code, Some(5), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    for needle in [
        "in use by another oms-sync process (PID ",
        "every 7days (sync.reconcile_every)",
        "oms-sync status",
        "fix: to reconcile now, stop the daemon (systemctl stop oms-sync), run --backfill",
    ] {
        assert!(
            lines[0].contains(needle),
            "{needle:?} missing: {}",
            lines[0]
        );
    }
    assert!(daemon.running(), "{}", daemon.stderr());
}
