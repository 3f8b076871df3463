//! `sync.keep_runs` on both backends: old runs go, and no row `status` or the scheduler reads
//! goes with them. Each kept row below is kept by one rule alone, so dropping any rule from
//! the statement fails the test.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{TestWarehouse, each_backend};
use oms_sync::resource::{Customers, Spec};
use oms_sync::sync::retention;
use oms_sync::warehouse::{BackfillState, Mark, RunKind, RunStatus, Warehouse};

/// A second stream: the rules hold per stream.
static OTHER: Spec = Spec {
    name: "others",
    ..*Customers::SPEC
};

/// Long before any cutoff the tests use.
const OLD: &str = "2020-01-01T00:00:00.000000Z";

/// Runs one statement on the warehouse under test.
fn exec(wh: &TestWarehouse, sql: &str) {
    match wh {
        TestWarehouse::Sqlite { .. } => {
            rusqlite::Connection::open(wh.sqlite_path())
                .unwrap()
                .execute_batch(sql)
                .unwrap();
        }
        TestWarehouse::Postgres(pg) => pg.with_client(|c| c.batch_execute(sql).unwrap()),
    }
}

fn ids(wh: &TestWarehouse) -> BTreeSet<i64> {
    (1..=wh.query_i64("SELECT coalesce(max(id), 0) FROM sync_runs"))
        .filter(|id| wh.query_i64(&format!("SELECT count(*) FROM sync_runs WHERE id = {id}")) == 1)
        .collect()
}

/// A run of `stream`, finished with `status` (None: still running), started at `OLD`
/// when `old`.
fn run(
    w: &mut impl Warehouse,
    t: &TestWarehouse,
    stream: &Spec,
    kind: RunKind,
    status: Option<RunStatus>,
    old: bool,
) -> i64 {
    let id = w.begin_run(stream, kind, &Mark::Start).unwrap();
    if let Some(s) = status {
        w.finish_run(stream, id, s, None).unwrap();
    }
    if old {
        exec(
            t,
            &format!("UPDATE sync_runs SET started_at = '{OLD}' WHERE id = {id}"),
        );
    }
    id
}

/// A succeeded incremental run of customers.
fn success(w: &mut impl Warehouse, t: &TestWarehouse, old: bool) -> i64 {
    run(
        w,
        t,
        Customers::SPEC,
        RunKind::Incremental,
        Some(RunStatus::Succeeded),
        old,
    )
}

/// A config file for the real binary on `t`, with `sync` as its `[sync]` section.
fn config_file(
    dir: &std::path::Path,
    oms: &fake_oms::FakeOms,
    t: &TestWarehouse,
    sync: &str,
) -> std::path::PathBuf {
    let config = dir.join("oms-sync.toml");
    let text = format!(
        "[api]\nbase_url = \"{}\"\ntoken = \"{}\"\n{}[sync]\n{sync}\n[log]\nlevel = \"warn\"\n",
        oms.base_url(),
        oms.token(),
        t.config_toml()
    );
    std::fs::write(&config, text).unwrap();
    config
}

fn cutoff_a_day_ago() -> String {
    oms_sync::timefmt::canonical(&(chrono::Utc::now() - chrono::TimeDelta::days(1)))
}

#[tokio::test]
async fn old_runs_go_but_not_the_ones_status_and_the_scheduler_read() {
    each_backend(old_runs_go_but_not_the_ones_status_and_the_scheduler_read_on).await;
}

async fn old_runs_go_but_not_the_ones_status_and_the_scheduler_read_on() {
    use RunKind::{Backfill, Incremental};
    use RunStatus::{Cancelled, Failed, Succeeded};
    let t = TestWarehouse::fresh();
    let mut w = t.open();
    let c = Customers::SPEC;
    // Kept as the stream's first run (reconciliation counts from it until a backfill ends).
    let first = success(&mut w, &t, true);
    let gone_success = success(&mut w, &t, true);
    // Kept as the newest finished backfill (the reconciliation's "last one").
    let last_backfill = run(&mut w, &t, c, Backfill, Some(Succeeded), true);
    let gone_failure = run(&mut w, &t, c, Incremental, Some(Failed), true);
    // Kept as the newest failure (status shows the last failure).
    let last_failure = run(&mut w, &t, c, Incremental, Some(Failed), true);
    // Kept because it is still running, though a newer run of its kind runs too.
    let running = run(&mut w, &t, c, Backfill, None, true);
    // Kept because the unfinished backfill belongs to it; a newer paused slice exists.
    let resumed = run(&mut w, &t, c, Backfill, Some(Cancelled), true);
    let paused = run(&mut w, &t, c, Backfill, Some(Cancelled), true);
    let young_running = run(&mut w, &t, c, Backfill, None, false);
    let young = success(&mut w, &t, false);
    w.start_backfill(
        c,
        &BackfillState {
            run_id: Some(resumed),
            started_at: OLD.into(),
            high_water_date: None,
            ranges: Vec::new(),
        },
    )
    .unwrap();
    // The other stream's runs are all old, and newer ones of the first stream exist: kept as
    // its own stream's first run, and newest success and failure.
    let other_failure_old = run(&mut w, &t, &OTHER, Incremental, Some(Failed), true);
    let other_success = run(&mut w, &t, &OTHER, Incremental, Some(Succeeded), true);
    let other_failure = run(&mut w, &t, &OTHER, Incremental, Some(Failed), true);
    let before = t.snapshot();

    let deleted = w.prune_runs(&cutoff_a_day_ago()).unwrap();

    let want: BTreeSet<i64> = [
        first,
        last_backfill,
        last_failure,
        running,
        resumed,
        paused,
        young_running,
        young,
        other_failure_old,
        other_success,
        other_failure,
    ]
    .into_iter()
    .collect();
    assert_eq!(ids(&t), want, "{}: the runs left", t.name());
    assert!(!want.contains(&gone_success) && !want.contains(&gone_failure));
    assert_eq!(deleted, 2, "{}", t.name());
    let after = t.snapshot();
    assert_eq!(
        after.last_success_at,
        before.last_success_at,
        "{}",
        t.name()
    );
    assert_eq!(
        after.last_backfill_at,
        before.last_backfill_at,
        "{}",
        t.name()
    );
    assert_eq!(after.first_run_at, before.first_run_at, "{}", t.name());
    assert_eq!(
        after.backfill.as_ref().and_then(|b| b.run_id),
        Some(resumed),
        "{}",
        t.name()
    );
    // Again: nothing more to forget.
    assert_eq!(w.prune_runs(&cutoff_a_day_ago()).unwrap(), 0);
}

/// `"0s"` keeps every run, however old; a positive span forgets what is older.
#[tokio::test]
async fn zero_keeps_every_run() {
    each_backend(zero_keeps_every_run_on).await;
}

async fn zero_keeps_every_run_on() {
    let t = TestWarehouse::fresh();
    let mut w = t.open();
    for _ in 0..3 {
        success(&mut w, &t, true);
    }
    success(&mut w, &t, false);
    let (w, r) = retention::prune_runs(w, Duration::ZERO).await;
    assert_eq!(r.unwrap(), 0);
    assert_eq!(
        t.query_i64("SELECT count(*) FROM sync_runs"),
        4,
        "{}",
        t.name()
    );
    let (_w, r) = retention::prune_runs(w, Duration::from_secs(86_400)).await;
    // The first and the newest stay; the two between go.
    assert_eq!(r.unwrap(), 2, "{}", t.name());
    assert_eq!(
        t.query_i64("SELECT count(*) FROM sync_runs"),
        2,
        "{}",
        t.name()
    );
}

/// In operation: `--once` of the real binary forgets, after its pass, the runs older than
/// `sync.keep_runs`, and with `OMS_SYNC__SYNC__KEEP_RUNS=0s` keeps them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_forgets_runs_older_than_keep_runs() {
    each_backend(once_forgets_on).await;
}

async fn once_forgets_on() {
    let oms = common::fake(common::distinct(30)).await;
    let t = TestWarehouse::fresh();
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path(), &oms, &t, "keep_runs = \"1d\"");
    let once = |keep: Option<&str>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_oms-sync"));
        cmd.arg("--config").arg(&config).arg("--once");
        if let Some(k) = keep {
            cmd.env("OMS_SYNC__SYNC__KEEP_RUNS", k);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    for _ in 0..3 {
        once(None);
    }
    exec(&t, &format!("UPDATE sync_runs SET started_at = '{OLD}'"));
    once(None);
    // The first run and the newest (the pass just made) stay.
    assert_eq!(ids(&t), BTreeSet::from([1, 4]), "{}", t.name());
    exec(&t, &format!("UPDATE sync_runs SET started_at = '{OLD}'"));
    once(Some("0s"));
    assert_eq!(ids(&t), BTreeSet::from([1, 4, 5]), "{}", t.name());
}

/// The daemon forgets old runs when it starts (and hourly after), on both backends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_forgets_old_runs_when_it_starts() {
    each_backend(daemon_forgets_on).await;
}

async fn daemon_forgets_on() {
    let oms = common::fake(common::distinct(30)).await;
    let t = TestWarehouse::fresh();
    let mut w = t.open();
    for _ in 0..3 {
        success(&mut w, &t, true);
    }
    drop(w);
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(
        dir.path(),
        &oms,
        &t,
        "interval = \"1h\"
reconcile_every = \"0s\"
keep_runs = \"1d\"",
    );
    let mut daemon = std::process::Command::new(env!("CARGO_BIN_EXE_oms-sync"))
        .arg("--config")
        .arg(&config)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Its first pass adds run 4; the prune before it leaves the first run and the newest
    // (no reconciliation: it would be due at once, counted from the old first run).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut left = ids(&t);
    while left != BTreeSet::from([1, 3, 4]) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        left = ids(&t);
    }
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    assert_eq!(left, BTreeSet::from([1, 3, 4]), "{}", t.name());
}
