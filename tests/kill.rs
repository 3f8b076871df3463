//! kill -9 (issue 4): the real binary, killed at random instants mid-pass over and over (both
//! `--once` and `--backfill`, data changing between rounds), never leaves a checkpoint that
//! claims a row it did not store, and a final run converges to the server exactly with an
//! intact database file. History mode is on: after the final runs `customers_history` holds
//! exactly the versions stored (no duplicate, none missing), each open one its row.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::TimeDelta;
use common::kill;
use common::*;
use fake_oms::{FakeCustomer, FakeOms, bulk_update};
use oms_sync::timefmt;
use oms_sync::warehouse::Mark;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const ROUNDS: usize = 30;

fn read_mark(wh: &TestWarehouse) -> Mark {
    wh.try_snapshot().map_or(Mark::Start, |s| s.mark)
}

fn progress(wh: &TestWarehouse) -> Option<(i64, i128, i64)> {
    kill::backfill_progress(wh.try_snapshot()?.backfill)
}

/// The server's customers as `(id, canonical modified_date)`, and the stored ones.
fn claims(oms: &FakeOms, wh: &TestWarehouse) -> (Vec<(i64, String)>, BTreeMap<i64, String>) {
    let server = oms
        .with_store(|s| s.snapshot())
        .into_iter()
        .map(|c| (c.id, timefmt::canonical(&c.modified_date)))
        .collect();
    let stored = wh
        .rows()
        .into_iter()
        .map(|(id, r)| (id, r.modified_date))
        .collect();
    (server, stored)
}

/// Runs the binary without interruption; it must succeed.
fn run_to_success(bin: &str, config: &Path, mode: &str) {
    let out = Command::new(bin)
        .arg("--config")
        .arg(config)
        .arg(mode)
        .output()
        .expect("the binary starts");
    assert!(
        out.status.success(),
        "{mode}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts the binary; its stderr goes to `stderr` (read when it exits on its own).
fn run(bin: &str, config: &Path, mode: &str, stderr: &Path) -> std::process::Child {
    Command::new(bin)
        .arg("--config")
        .arg(config)
        .arg(mode)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(stderr).expect("a file for stderr"))
        .spawn()
        .expect("the binary starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_pass_never_corrupts_or_loses_rows() {
    for backend in backends() {
        eprintln!("-- backend: {backend:?}");
        kill_9_rounds(TestWarehouse::of(backend)).await;
    }
}

async fn kill_9_rounds(wh: TestWarehouse) {
    let started = Instant::now();
    let mut customers = distinct(1200);
    // Two big tie groups (bulk updates), larger than many pages.
    for id in 1201..=2400 {
        customers.push(FakeCustomer::new(id, at(10_000, 0)));
    }
    for id in 2401..=3000 {
        customers.push(FakeCustomer::new(id * 7 % 5003 + 3000, at(20_000, 0)));
    }
    let oms = fake(customers).await;
    oms.knobs(|k| k.record_requests = false);
    // A little slow per request, so a pass takes a few hundred ms and kills land inside it.
    oms.set_before_request(Box::new(|_, _| {
        std::thread::sleep(Duration::from_millis(6))
    }));

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("oms-sync.toml");
    std::fs::write(
        &config,
        format!(
            "[api]\nbase_url = \"{}\"\ntoken = \"{}\"\npage_size = 25\n\
             retry_min_delay = \"10ms\"\nretry_max_delay = \"50ms\"\n\
             {}[sync]\ninterval = \"1s\"\nhistory = true\n[log]\nlevel = \"error\"\n",
            oms.base_url(),
            oms.token(),
            wh.config_toml()
        ),
    )
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_oms-sync");
    // The schema, then the history oracle's triggers (they log what each commit stored).
    drop(wh.open());
    common::history::install_version_log(&wh);
    let mut rng = StdRng::seed_from_u64(0x6b11);
    let mut tally = kill::Tally::default();
    let mut next_id = 10_000;
    // One window per mode (incremental, backfill); see `KillWindow`.
    let mut windows = [kill::KillWindow::new(20.0, 380.0); 2];

    for round in 0..ROUNDS {
        let backfill = round % 2 == 0;
        if !backfill || round % 4 == 0 {
            // Data changes between rounds: a bulk update ties 600 customers at a new instant,
            // some sign up, a few are deleted.
            oms.with_store(|s| {
                let newest = s.max_modified_date().unwrap();
                let ids: Vec<i64> = s.ids().collect();
                let pick: Vec<i64> = (0..600)
                    .map(|_| ids[rng.random_range(0..ids.len())])
                    .collect();
                bulk_update(s, &pick, newest + TimeDelta::milliseconds(1));
                for k in 0..10 {
                    next_id += 1;
                    s.upsert(FakeCustomer::new(
                        next_id,
                        newest + TimeDelta::milliseconds(2) + TimeDelta::microseconds(k),
                    ));
                }
                for _ in 0..3 {
                    s.remove(ids[rng.random_range(0..ids.len())]);
                }
            });
        }
        let mark_before = read_mark(&wh);
        let bf_before = progress(&wh);
        let stderr = dir.path().join("stderr");
        let mut child = run(
            bin,
            &config,
            if backfill { "--backfill" } else { "--once" },
            &stderr,
        );
        let window = &mut windows[usize::from(backfill)];
        let wait_ms = window.draw(&mut rng);
        let ended = kill::kill_after(&mut child, wait_ms).await;
        let mark = read_mark(&wh);
        // Before its first commit a killed run may leave no tables yet.
        if mark != Mark::Start {
            let (server, stored) = claims(&oms, &wh);
            kill::assert_claims_stored(&mark, server, &stored, round);
        }
        let moved = if backfill {
            let bf_after = progress(&wh);
            bf_after.is_some() && bf_after != bf_before
        } else {
            mark != mark_before
        };
        tally.record(window, wait_ms, ended, moved, backfill, || {
            std::fs::read_to_string(&stderr).unwrap_or_default()
        });
    }

    // Run to completion: the backfill (resuming a killed one if any), then an incremental pass:
    // every server row is stored with its values. A resumed backfill cannot see deletions
    // behind its cursor made while it was stopped, so one more (fresh) backfill must then
    // leave no extra live row.
    oms.clear_before_request();
    let resumed = progress(&wh).is_some();
    for mode in ["--backfill", "--once"] {
        run_to_success(bin, &config, mode);
    }
    assert_in_step(&oms, &wh.rows(), false);
    run_to_success(bin, &config, "--backfill");
    assert_in_step(&oms, &wh.rows(), true);
    let n = wh.query_i64("SELECT count(*) FROM customers");
    let distinct_ids = wh.query_i64("SELECT count(DISTINCT id) FROM customers");
    assert_eq!(n, distinct_ids, "duplicate ids");
    wh.assert_intact();
    common::history::assert_history_is_the_stored_versions(&wh);
    let interrupted = wh.query_i64("SELECT count(*) FROM sync_runs WHERE status = 'interrupted'");
    let running = wh.query_i64("SELECT count(*) FROM sync_runs WHERE status = 'running'");
    assert_eq!(
        running, 0,
        "runs of killed processes are closed on the next open"
    );
    let kill::Tally {
        mid_pass,
        mid_backfill,
        before_commit,
        finished_first,
    } = &tally;
    eprintln!(
        "kill -9: {ROUNDS} rounds: {} killed ({mid_pass} mid-pass with committed progress, \
         {mid_backfill} of them in a backfill; {before_commit} before their first commit), \
         {finished_first} finished before the kill; {interrupted} runs recorded interrupted; \
         final backfill resumed a killed one: {resumed}; final {n} rows; {:?}",
        ROUNDS - finished_first,
        started.elapsed()
    );
    tally.assert_enough_mid_pass(ROUNDS);
}
