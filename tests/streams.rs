//! Several streams in one process, through the real binary against the fake OMS serving
//! customers, stock locations and customer addresses: `sync.streams` chooses them; a daemon
//! tick runs all, one refused (403) while the others stay in step, each with its own
//! checkpoint; `--once` tries every stream and exits with the first failure's code;
//! `--backfill --stream NAME` runs one; a kill -9 mid-tick loses nothing in any stream.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fake_oms::{
    CUSTOMER_ADDRESSES, CUSTOMER_ADDRESSES_PATH, FakeOms, Record, STOCK_LOCATIONS,
    STOCK_LOCATIONS_PATH, Store,
};
use oms_sync::timefmt::canonical;

const BIN: &str = env!("CARGO_BIN_EXE_oms-sync");

/// The fake with 150 customers, their addresses and 40 stock locations.
async fn fake() -> FakeOms {
    let oms = common::fake(common::distinct(150)).await;
    let ids: Vec<i64> = (1..=150).collect();
    oms.add_resource(Store::from_records(
        &STOCK_LOCATIONS,
        fake_oms::synthetic_stock_locations(40, 7),
    ));
    oms.add_resource(Store::from_records(
        &CUSTOMER_ADDRESSES,
        fake_oms::synthetic_customer_addresses(&ids, 2, 7),
    ));
    oms
}

fn config(dir: &Path, oms: &FakeOms, streams: &str) -> PathBuf {
    let p = dir.join("oms-sync.toml");
    std::fs::write(
        &p,
        format!(
            "[api]\nbase_url = \"{}\"\ntoken = \"{}\"\npage_size = 25\nretry_min_delay = \"10ms\"\nretry_max_delay = \"50ms\"\n\n[warehouse]\npath = \"{}\"\n\n[sync]\ninterval = \"300ms\"\nlookback = \"0s\"\nstreams = [{streams}]\n",
            oms.base_url(),
            oms.token(),
            dir.join("warehouse.db").display()
        ),
    )
    .unwrap();
    p
}

const ALL: &str = "\"customers\", \"stock_locations\", \"customer_addresses\"";

struct Run {
    code: Option<i32>,
    stderr: String,
}

/// Runs the binary to its end (the fake serves from this runtime meanwhile).
async fn run(cfg: &Path, args: &[&str]) -> Run {
    let err = tempfile::NamedTempFile::new().unwrap();
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(cfg)
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("NOTIFY_SOCKET")
        .stdout(Stdio::null())
        .stderr(err.reopen().unwrap())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{args:?} hangs"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    Run {
        code: status.code(),
        stderr: std::fs::read_to_string(err.path()).unwrap(),
    }
}

/// `(id → modified_date)` of a served resource.
fn served(oms: &FakeOms, path: &str) -> BTreeMap<i64, String> {
    oms.with_resource::<Record, _>(path, |s| {
        s.all()
            .map(|r| (r.id, canonical(&r.modified_date)))
            .collect()
    })
    .expect("served")
}

fn served_customers(oms: &FakeOms) -> BTreeMap<i64, String> {
    oms.with_store(|s| {
        s.all()
            .map(|c| (c.id, canonical(&c.modified_date)))
            .collect()
    })
}

/// `(id → modified_date)` of a warehouse table's live rows (none while the daemon is still
/// creating the warehouse).
fn stored(db: &Path, table: &str) -> BTreeMap<i64, String> {
    let c = rusqlite::Connection::open(db).unwrap();
    let Ok(mut st) = c.prepare(&format!(
        "SELECT id, modified_date FROM live_{table} ORDER BY id"
    )) else {
        return BTreeMap::new();
    };
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn query(db: &Path, sql: &str) -> Vec<(String, String)> {
    let c = rusqlite::Connection::open(db).unwrap();
    let mut st = c.prepare(sql).unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Waits until `ok` holds (or fails after 30 s).
async fn until(what: &str, mut ok: impl FnMut() -> bool) {
    let started = Instant::now();
    while !ok() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "timed out: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

struct Daemon(Child);
impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Three streams in one daemon: addresses answer 403 (a token without that permission) while
/// customers and stock locations are synced, changed and synced again on later ticks; each
/// stream has its own checkpoint; the refused stream's runs are failed with the reason; once
/// the permission is granted, it catches up on its own; SIGTERM still ends the daemon with 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_stream_refused_while_the_others_stay_in_step() {
    let oms = fake().await;
    oms.knobs(|k| k.forbidden_paths = vec![CUSTOMER_ADDRESSES_PATH.to_string()]);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("warehouse.db");
    let cfg = config(dir.path(), &oms, ALL);
    let log = dir.path().join("log");
    let mut daemon = Daemon(
        Command::new(BIN)
            .arg("--config")
            .arg(&cfg)
            .env_remove("RUST_LOG")
            .env_remove("NOTIFY_SOCKET")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let in_step = |db: &Path, oms: &FakeOms| {
        db.exists()
            && stored(db, "customers") == served_customers(oms)
            && stored(db, "stock_locations") == served(oms, STOCK_LOCATIONS_PATH)
    };
    until("customers and stock locations in step", || {
        in_step(&db, &oms)
    })
    .await;
    // The OMS changes on both served streams; later ticks bring them over.
    oms.with_store(|s| fake_oms::touch_random(s, 0.2, 3));
    oms.with_resource::<Record, _>(STOCK_LOCATIONS_PATH, |s| {
        fake_oms::touch_random(s, 0.5, 4);
        fake_oms::insert_new(s, 5, 5);
    })
    .unwrap();
    until("the changes in step", || in_step(&db, &oms)).await;
    assert!(
        stored(&db, "customer_addresses").is_empty(),
        "refused: nothing stored"
    );
    let failed = query(
        &db,
        "SELECT status, coalesce(error, '') FROM sync_runs WHERE stream = 'customer_addresses'",
    );
    assert!(!failed.is_empty());
    assert!(
        failed
            .iter()
            .all(|(st, e)| st == "failed" && e.contains("403")),
        "{failed:?}"
    );
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(
        log_text.contains("stream=customer_addresses") && log_text.contains("pass failed"),
        "{log_text}"
    );
    // Each stream its own checkpoint: at its own newest row.
    let marks: BTreeMap<String, String> = query(
        &db,
        "SELECT stream, mark_modified_date FROM sync_state WHERE mark_modified_date IS NOT NULL",
    )
    .into_iter()
    .collect();
    let newest = |m: &BTreeMap<i64, String>| m.values().max().cloned().unwrap();
    assert_eq!(
        marks.get("customers"),
        Some(&newest(&served_customers(&oms)))
    );
    assert_eq!(
        marks.get("stock_locations"),
        Some(&newest(&served(&oms, STOCK_LOCATIONS_PATH)))
    );
    assert!(!marks.contains_key("customer_addresses"), "{marks:?}");
    // Permission granted: the refused stream catches up by itself.
    oms.knobs(|k| k.forbidden_paths.clear());
    until("addresses in step", || {
        stored(&db, "customer_addresses") == served(&oms, CUSTOMER_ADDRESSES_PATH)
    })
    .await;
    assert!(daemon.0.try_wait().unwrap().is_none(), "still running");
    unsafe { libc::kill(daemon.0.id() as i32, libc::SIGTERM) };
    let started = Instant::now();
    let code = loop {
        if let Some(st) = daemon.0.try_wait().unwrap() {
            break st.code();
        }
        assert!(started.elapsed() < Duration::from_secs(20));
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(code, Some(0), "{}", std::fs::read_to_string(&log).unwrap());
}

/// `--once` runs every stream although one in the middle is refused, then exits with that
/// failure's code (3, authentication) naming the stream; the others are stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_tries_every_stream_and_exits_with_the_first_failure() {
    let oms = fake().await;
    oms.knobs(|k| k.forbidden_paths = vec![CUSTOMER_ADDRESSES_PATH.to_string()]);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("warehouse.db");
    let order = "\"customers\", \"customer_addresses\", \"stock_locations\"";
    let r = run(&config(dir.path(), &oms, order), &["--once"]).await;
    assert_eq!(r.code, Some(3), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("stream customer_addresses failed (1 of 3 streams failed"),
        "{}",
        r.stderr
    );
    assert_eq!(stored(&db, "customers"), served_customers(&oms));
    assert_eq!(
        stored(&db, "stock_locations"),
        served(&oms, STOCK_LOCATIONS_PATH),
        "the stream after the failed one ran too"
    );
    // All succeed: 0.
    oms.knobs(|k| k.forbidden_paths.clear());
    let r = run(&config(dir.path(), &oms, order), &["--once"]).await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(
        stored(&db, "customer_addresses"),
        served(&oms, CUSTOMER_ADDRESSES_PATH)
    );
}

/// `--backfill --stream NAME` runs that stream alone; `--backfill` runs every enabled one; an
/// unknown name is a usage error listing the streams, and so is `--stream` without
/// `--backfill`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_of_one_stream_or_all() {
    let oms = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("warehouse.db");
    let cfg = config(dir.path(), &oms, ALL);
    let r = run(&cfg, &["--backfill", "--stream", "stock_locations"]).await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let runs = query(&db, "SELECT stream, kind FROM sync_runs");
    assert_eq!(
        runs,
        [("stock_locations".to_string(), "backfill".to_string())]
    );
    assert_eq!(
        stored(&db, "stock_locations"),
        served(&oms, STOCK_LOCATIONS_PATH)
    );
    assert!(stored(&db, "customers").is_empty());
    // A removed location is marked deleted by the next backfill of that stream.
    oms.with_resource::<Record, _>(STOCK_LOCATIONS_PATH, |s| s.remove(3))
        .unwrap();
    let r = run(&cfg, &["--backfill"]).await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(
        stored(&db, "stock_locations"),
        served(&oms, STOCK_LOCATIONS_PATH)
    );
    assert_eq!(stored(&db, "customers"), served_customers(&oms));
    assert_eq!(
        stored(&db, "customer_addresses"),
        served(&oms, CUSTOMER_ADDRESSES_PATH)
    );
    for bad in [
        vec!["--backfill", "--stream", "orders"],
        vec!["--stream", "customers"],
    ] {
        let r = run(&cfg, &bad).await;
        assert_eq!(r.code, Some(2), "{bad:?}: {}", r.stderr);
    }
    let r = run(&cfg, &["--backfill", "--stream", "orders"]).await;
    assert!(
        r.stderr.contains("\"orders\"")
            && r.stderr
                .contains("customers, stock_locations, customer_addresses"),
        "{}",
        r.stderr
    );
}

/// An unknown name in `sync.streams` (here from the environment) stops the binary before any
/// request, naming the key, the value and the valid names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_stream_in_the_config_is_refused() {
    let oms = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &oms, ALL);
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&cfg)
        .arg("--once")
        .env("OMS_SYNC__SYNC__STREAMS", "customers,addresses")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("sync.streams")
            && err.contains("\"addresses\"")
            && err.contains("stock_locations"),
        "{err}"
    );
    assert_eq!(oms.total_requests(), 0);
}

/// Every stream's checkpoint: `stream → (modified_date, after_id)` as `sync_state` holds it.
fn marks(db: &Path) -> BTreeMap<String, oms_sync::warehouse::Mark> {
    let c = rusqlite::Connection::open(db).unwrap();
    let Ok(mut st) = c.prepare("SELECT stream, mark_modified_date, mark_after_id FROM sync_state")
    else {
        return BTreeMap::new();
    };
    st.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            oms_sync::warehouse::Mark::from_columns(r.get(1)?, r.get(2)?),
        ))
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

/// The daemon with three streams killed with SIGKILL mid-tick, again and again while the OMS
/// changes: no stream's checkpoint ever claims a row its table does not hold, and a final
/// `--once` leaves every table equal to the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_tick_loses_nothing_in_any_stream() {
    let oms = fake().await;
    // Slow enough that a kill lands inside a tick of three streams.
    oms.knobs(|k| k.latency = Duration::from_millis(4));
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("warehouse.db");
    let cfg = config(dir.path(), &oms, ALL);
    let tables = [
        ("customers", None),
        ("stock_locations", Some(STOCK_LOCATIONS_PATH)),
        ("customer_addresses", Some(CUSTOMER_ADDRESSES_PATH)),
    ];
    let served_of = |path: Option<&str>| match path {
        None => served_customers(&oms),
        Some(p) => served(&oms, p),
    };
    let mut mid_tick = 0;
    for round in 0..10u64 {
        let mut child = Command::new(BIN)
            .arg("--config")
            .arg(&cfg)
            .env_remove("RUST_LOG")
            .env_remove("NOTIFY_SOCKET")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Past this process's first commit (the machine's load does not decide where the kill
        // lands), then a little further on each round.
        let runs = |db: &Path| -> i64 {
            rusqlite::Connection::open(db)
                .and_then(|c| {
                    c.query_row("SELECT count(*) FROM sync_runs WHERE pages > 0", [], |r| {
                        r.get(0)
                    })
                })
                .unwrap_or(0)
        };
        let before = if db.exists() { runs(&db) } else { 0 };
        let started = Instant::now();
        while (!db.exists() || runs(&db) <= before) && started.elapsed() < Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(10 + 25 * (round % 5))).await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let marks = marks(&db);
        let mut moved = 0;
        for (table, path) in tables {
            let got = stored(&db, table);
            let Some(mark) = marks.get(table) else {
                continue;
            };
            for (id, md) in served_of(path) {
                if mark.covers(&md, id) {
                    moved += 1;
                    assert_eq!(
                        got.get(&id),
                        Some(&md),
                        "round {round}: {table} checkpoint {mark} claims {id} at {md}"
                    );
                }
            }
        }
        let complete = tables.iter().all(|(t, p)| stored(&db, t) == served_of(*p));
        if moved > 0 && !complete {
            mid_tick += 1;
        }
        // The OMS changes between rounds, on every stream.
        oms.with_store(|s| fake_oms::touch_random(s, 0.3, round));
        for p in [STOCK_LOCATIONS_PATH, CUSTOMER_ADDRESSES_PATH] {
            oms.with_resource::<Record, _>(p, |s| {
                fake_oms::touch_random(s, 0.1, round + 100);
                fake_oms::insert_new(s, 3, round + 200);
            })
            .unwrap();
        }
    }
    eprintln!(
        "kill -9 mid-tick: {mid_tick} of 10 kills left a stream part-way with its checkpoint moved"
    );
    assert!(
        mid_tick >= 1,
        "no kill landed mid-tick: the test tests nothing"
    );
    let r = run(&cfg, &["--once"]).await;
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    for (table, path) in tables {
        assert_eq!(stored(&db, table), served_of(path), "{table}");
    }
    let running = query(
        &db,
        "SELECT stream, status FROM sync_runs WHERE status = 'running'",
    );
    assert!(running.is_empty(), "{running:?}");
}
