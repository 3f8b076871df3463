//! kill -9 (issue 4): the real binary, killed at random instants mid-pass over and over (both
//! `--once` and `--backfill`, data changing between rounds), never leaves a checkpoint that
//! claims a row it did not store, and a final run converges to the server exactly with an
//! intact database file.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::TimeDelta;
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

/// `(ranges, sum of cursors, ranges done)` of an unfinished backfill, if any.
fn backfill_progress(wh: &TestWarehouse) -> Option<(i64, i128, i64)> {
    let ranges = wh.try_snapshot()?.backfill?.ranges;
    Some((
        ranges.len() as i64,
        ranges.iter().map(|r| i128::from(r.cursor)).sum(),
        ranges.iter().filter(|r| r.done).count() as i64,
    ))
}

/// g3 after a kill: every server row the checkpoint claims is stored with at least that version.
fn assert_claims_stored(oms: &FakeOms, wh: &TestWarehouse, mark: &Mark, round: usize) {
    if *mark == Mark::Start {
        return;
    }
    let rows = wh.rows();
    let mut claimed = 0;
    for c in oms.with_store(|s| s.snapshot()) {
        let md = timefmt::canonical(&c.modified_date);
        if mark.covers(&md, c.id) {
            claimed += 1;
            let row = rows.get(&c.id).unwrap_or_else(|| {
                panic!(
                    "round {round}: mark {mark} claims {} but it is missing",
                    c.id
                )
            });
            assert!(
                row.modified_date >= md,
                "round {round}: mark {mark} claims {} at {md}, stored {}",
                c.id,
                row.modified_date
            );
        }
    }
    assert!(claimed <= rows.len());
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
             {}[sync]\ninterval = \"1s\"\n[log]\nlevel = \"error\"\n",
            oms.base_url(),
            oms.token(),
            wh.config_toml()
        ),
    )
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_oms-sync");
    let mut rng = StdRng::seed_from_u64(0x6b11);
    let (mut mid_pass, mut finished_first, mut before_commit) = (0, 0, 0);
    let mut mid_backfill = 0;
    let mut next_id = 10_000;
    // The kill window follows the machine: a kill that landed before the first commit (a
    // loaded machine, a slow server connect) moves its start later, a run that finished first
    // moves its end earlier. Which rounds land mid-pass is what the test is about, not the
    // delay. One window (start, length in ms) per mode: a backfill takes longer to its first
    // commit than an incremental pass.
    let mut windows: [(f64, f64); 2] = [(20.0, 380.0); 2];

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
        let bf_before = backfill_progress(&wh);
        let stderr = dir.path().join("stderr");
        let mut child = run(
            bin,
            &config,
            if backfill { "--backfill" } else { "--once" },
            &stderr,
        );
        let window = &mut windows[usize::from(backfill)];
        let wait_ms = window.0 + window.1 * rng.random_range(0.0..=1.0);
        let wait = Duration::from_secs_f64(wait_ms / 1000.0);
        tokio::time::sleep(wait).await;
        let mut exited = child.try_wait().unwrap();
        if exited.is_none() {
            child.kill().unwrap(); // SIGKILL
        }
        let status = child.wait().unwrap();
        // A process that finished between `try_wait` and the signal exited on its own (a
        // SIGKILLed one never exits 0): count it so, do not fail the round.
        if exited.is_none() && status.success() {
            exited = Some(status);
        }
        let mark = read_mark(&wh);
        assert_claims_stored(&oms, &wh, &mark, round);
        let bf_after = backfill_progress(&wh);
        match exited {
            Some(s) => {
                assert!(
                    s.success(),
                    "round {round}: exited early with {s}: {}",
                    std::fs::read_to_string(&stderr).unwrap_or_default()
                );
                finished_first += 1;
                // It ends before `wait_ms`.
                window.1 = ((wait_ms - window.0) * 0.8).max(20.0);
            }
            None => {
                let moved = if backfill {
                    bf_after.is_some() && bf_after != bf_before
                } else {
                    mark != mark_before
                };
                if moved {
                    mid_pass += 1;
                    if backfill {
                        mid_backfill += 1;
                    }
                } else {
                    before_commit += 1;
                    // Its first commit comes after `wait_ms`.
                    let end = window.0 + window.1;
                    window.0 = window.0.max(wait_ms);
                    window.1 = (end - window.0).max(40.0);
                }
            }
        }
    }

    // Run to completion: the backfill (resuming a killed one if any), then an incremental pass:
    // every server row is stored with its values. A resumed backfill cannot see deletions
    // behind its cursor made while it was stopped, so one more (fresh) backfill must then
    // leave no extra live row.
    oms.clear_before_request();
    let resumed = backfill_progress(&wh).is_some();
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
    let interrupted = wh.query_i64("SELECT count(*) FROM sync_runs WHERE status = 'interrupted'");
    let running = wh.query_i64("SELECT count(*) FROM sync_runs WHERE status = 'running'");
    assert_eq!(
        running, 0,
        "runs of killed processes are closed on the next open"
    );
    eprintln!(
        "kill -9: {ROUNDS} rounds: {} killed ({mid_pass} mid-pass with committed progress, \
         {mid_backfill} of them in a backfill; {before_commit} before their first commit), \
         {finished_first} finished before the kill; {interrupted} runs recorded interrupted; \
         final backfill resumed a killed one: {resumed}; final {n} rows; {:?}",
        ROUNDS - finished_first,
        started.elapsed()
    );
    assert!(
        mid_pass >= ROUNDS / 3,
        "only {mid_pass} of {ROUNDS} kills landed mid-pass: the test does not test much"
    );
}
