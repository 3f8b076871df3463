//! PostgreSQL high availability against REAL servers: a primary and a streaming standby
//! (`.ci/pg-ha-start`, found through `OMS_SYNC_TEST_PG_HA`), started per test in a temp dir
//! so the test may stop, promote and restart them without touching any other server. The real
//! binary syncs from the fake OMS through the multi-host URL; after the primary dies and the
//! standby is promoted, or after a restart mid-backfill, the warehouse equals the API.
//! Without the variable each test prints a "skipped" line and passes, except under `CI`.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::TimeDelta;
use common::*;
use fake_oms::{FakeCustomer, FakeOms, bulk_update};
use oms_sync::warehouse::{Location, PgConfig, PgWarehouse, WarehouseError};

const ENV: &str = "OMS_SYNC_TEST_PG_HA";
const BIN: &str = env!("CARGO_BIN_EXE_oms-sync");

/// A primary and its standby, owned by this test; stopped and removed on drop.
struct Pair {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    url: String,
    bin: PathBuf,
}

impl Pair {
    fn start(test: &str) -> Option<Pair> {
        let Ok(script) = std::env::var(ENV) else {
            if std::env::var_os("CI").is_some() {
                panic!("{ENV} is not set under CI: .ci/run sets it to .ci/pg-ha-start");
            }
            let _ = writeln!(
                std::io::stderr(),
                "skipped: set {ENV}=$PWD/.ci/pg-ha-start to run the PostgreSQL failover test {test}"
            );
            return None;
        };
        let tmp = tempfile::tempdir().expect("temp dir");
        // The servers run as `postgres` when the tests run as root: let it reach the pair's dir.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o711))
                .expect("chmod temp dir");
        }
        let dir = tmp.path().join("pair");
        let out = Command::new("bash")
            .arg(&script)
            .arg(&dir)
            .output()
            .expect("run pg-ha-start");
        assert!(
            out.status.success(),
            "{script} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let url = String::from_utf8(out.stdout).unwrap().trim().to_string();
        let bin = PathBuf::from(std::fs::read_to_string(dir.join("bin")).unwrap().trim());
        Some(Pair {
            _tmp: tmp,
            dir,
            url,
            bin,
        })
    }

    fn port(&self, node: &str) -> u16 {
        std::fs::read_to_string(self.dir.join(format!("{node}.port")))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// `pg_ctl -D DIR/node args…`, as `postgres` when root (as .ci/pg-start does).
    fn pg_ctl(&self, node: &str, args: &[&str]) {
        let pg_ctl = self.bin.join("pg_ctl");
        let data = self.dir.join(node);
        let log = self.dir.join(format!("{node}.log"));
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&pg_ctl);
            c
        } else {
            Command::new(&pg_ctl)
        };
        let out = cmd
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "30"])
            .args(args)
            .output()
            .expect("run pg_ctl");
        assert!(
            out.status.success(),
            "pg_ctl {args:?} on {node}: {}{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// The warehouse in `schema` on whichever server is the primary now.
    fn warehouse(&self, schema: &str) -> TestWarehouse {
        let cfg = PgConfig::parse(&self.url, None, Some(schema), false).expect("pair URL");
        TestWarehouse::Postgres(PgSchema {
            url: self.url.clone(),
            cfg,
        })
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        let stop = Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/pg-ha-stop");
        let _ = Command::new("bash").arg(stop).arg(&self.dir).status();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// The port of the server the URL reaches now (the primary, with read-write).
fn serving_port(url: &str) -> i32 {
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut c = postgres::Client::connect(url, postgres::NoTls).expect("connect");
            c.query_one("SELECT inet_server_port()", &[])
                .unwrap()
                .get(0)
        })
        .join()
        .unwrap()
    })
}

fn write_config(dir: &Path, oms: &FakeOms, wh: &TestWarehouse, page: u32) -> PathBuf {
    let config = dir.join("oms-sync.toml");
    std::fs::write(
        &config,
        format!(
            "[api]\nbase_url = \"{}\"\ntoken = \"{}\"\npage_size = {page}\n\
             retry_min_delay = \"10ms\"\nretry_max_delay = \"50ms\"\n\
             {}[sync]\ninterval = \"1s\"\n[log]\nlevel = \"info\"\n",
            oms.base_url(),
            oms.token(),
            wh.config_toml()
        ),
    )
    .unwrap();
    config
}

fn spawn(config: &Path, args: &[&str], log: &Path) -> Child {
    Command::new(BIN)
        .arg("--config")
        .arg(config)
        .args(args)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("the binary starts")
}

/// Waits (bounded) until the warehouse equals the API; panics with the daemon's log if not.
async fn wait_in_step(oms: &FakeOms, wh: &TestWarehouse, log: &Path, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let rows = wh.try_snapshot().map(|_| wh.rows());
        let ok = rows.as_ref().is_some_and(|got| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                assert_in_step(oms, got, true)
            }))
            .is_ok()
        });
        if ok {
            return;
        }
        if Instant::now() > deadline {
            let got = wh.rows();
            eprintln!("{}", std::fs::read_to_string(log).unwrap_or_default());
            assert_in_step(oms, &got, true);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn schema(name: &str) -> String {
    format!("f_{name}_{}", std::process::id())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_failover_the_daemon_writes_to_the_promoted_standby_and_loses_nothing() {
    let Some(pair) = Pair::start("failover") else {
        return;
    };
    let started = Instant::now();
    let oms = fake(distinct(3000)).await;
    oms.knobs(|k| k.record_requests = false);
    let wh = pair.warehouse(&schema("failover"));
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &oms, &wh, 100);
    let log = dir.path().join("daemon.log");
    let mut daemon = spawn(&config, &[], &log);
    wait_in_step(&oms, &wh, &log, Duration::from_secs(30)).await;
    assert_eq!(serving_port(&pair.url), i32::from(pair.port("primary")));

    // The primary dies without a shutdown checkpoint; the standby becomes the primary.
    pair.pg_ctl("primary", &["-m", "immediate", "stop"]);
    pair.pg_ctl("standby", &["promote"]);
    assert_eq!(serving_port(&pair.url), i32::from(pair.port("standby")));
    // Data changes on the API: an update touching 500 customers, and new sign-ups.
    oms.with_store(|s| {
        let newest = s.max_modified_date().unwrap();
        let ids: Vec<i64> = s.ids().step_by(6).collect();
        bulk_update(s, &ids, newest + TimeDelta::milliseconds(5));
        for k in 0..50 {
            s.upsert(FakeCustomer::new(
                100_000 + k,
                newest + TimeDelta::milliseconds(6) + TimeDelta::microseconds(k),
            ));
        }
    });
    wait_in_step(&oms, &wh, &log, Duration::from_secs(45)).await;
    assert!(
        daemon.try_wait().unwrap().is_none(),
        "the daemon must keep running through the failover"
    );
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("connecting to the PostgreSQL warehouse again"),
        "the daemon reconnected: {text}"
    );
    wh.assert_intact();
    eprintln!("failover test took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_mid_backfill_and_the_backfill_completes() {
    let Some(pair) = Pair::start("restart") else {
        return;
    };
    let started = Instant::now();
    let oms = fake(distinct(6000)).await;
    oms.knobs(|k| k.record_requests = false);
    // Slow enough per page that the restart lands inside the backfill.
    oms.set_before_request(Box::new(|_, _| {
        std::thread::sleep(Duration::from_millis(20))
    }));
    let wh = pair.warehouse(&schema("restart"));
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &oms, &wh, 50);
    let log = dir.path().join("backfill.log");
    let mut child = spawn(&config, &["--backfill"], &log);
    // Restart once some pages are stored, well before the end.
    let deadline = Instant::now() + Duration::from_secs(30);
    while wh.try_snapshot().is_none() || wh.query_i64("SELECT count(*) FROM customers") < 500 {
        assert!(Instant::now() < deadline, "the backfill made no progress");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the backfill ended early"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = wh.query_i64("SELECT count(*) FROM customers");
    pair.pg_ctl("primary", &["-m", "fast", "restart"]);
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "the backfill completes: {status}: {text}");
    assert!(
        before < 6000,
        "the restart landed mid-backfill ({before} rows stored)"
    );
    assert!(
        text.contains("connecting to the PostgreSQL warehouse again"),
        "it reconnected: {text}"
    );
    wait_in_step(&oms, &wh, &log, Duration::from_secs(1)).await;
    wh.assert_intact();
    eprintln!("restart test took {:?}", started.elapsed());
}

#[test]
fn a_standby_or_a_read_only_server_is_refused_with_the_fix() {
    let Some(pair) = Pair::start("readonly") else {
        return;
    };
    let standby = format!(
        "postgresql://postgres@127.0.0.1:{}/postgres?sslmode=disable",
        pair.port("standby")
    );
    let cfg = PgConfig::parse(&standby, None, Some("f_ro"), false).unwrap();
    let e = PgWarehouse::open(&cfg).unwrap_err();
    assert!(
        matches!(
            e,
            WarehouseError::ReadOnly {
                at: Location::Server(_),
                ..
            }
        ) && e.to_string().contains("standby"),
        "{e}"
    );
    assert!(
        e.to_string().contains("target_session_attrs=read-write"),
        "{e}"
    );
    // Asking for a writable server when only the standby is listed.
    let cfg = PgConfig::parse(
        &format!("{standby}&target_session_attrs=read-write"),
        None,
        Some("f_ro"),
        false,
    )
    .unwrap();
    let e = PgWarehouse::open(&cfg).unwrap_err();
    assert!(
        matches!(
            e,
            WarehouseError::ReadOnly {
                at: Location::Server(_),
                ..
            }
        ) && e.to_string().contains("no server"),
        "{e}"
    );
    // A primary whose sessions are read-only by default.
    let primary = format!(
        "postgresql://postgres@127.0.0.1:{}/postgres?sslmode=disable",
        pair.port("primary")
    );
    let mut admin = postgres::Client::connect(&primary, postgres::NoTls).unwrap();
    admin
        .batch_execute("CREATE ROLE ro LOGIN; ALTER ROLE ro SET default_transaction_read_only = on")
        .unwrap();
    let ro = primary.replace("postgres@", "ro@");
    let cfg = PgConfig::parse(&ro, None, Some("f_ro"), false).unwrap();
    let e = PgWarehouse::open(&cfg).unwrap_err();
    assert!(
        matches!(
            e,
            WarehouseError::ReadOnly {
                at: Location::Server(_),
                ..
            }
        ) && e.to_string().contains("default_transaction_read_only"),
        "{e}"
    );
    // The multi-host URL picks the primary and opens.
    let cfg = PgConfig::parse(&pair.url, None, Some("f_ro"), false).unwrap();
    PgWarehouse::open(&cfg).expect("the primary takes writes");
}
