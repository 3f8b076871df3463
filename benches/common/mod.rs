//! Helpers shared by the bench targets (`sync`, `remote`): number formatting, medians, removing
//! a warehouse and its side files, and running the real `oms-sync --backfill` binary as a child
//! process with its peak RSS, the record a fake customer becomes; `pg`: the PostgreSQL leg (server, schemas, raw loop).
#![allow(dead_code)]

pub mod pg;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fake_oms::{FakeCustomer, FakeOms};
use oms_sync::resource::{Customer, CustomerFields};

/// The record the warehouse holds for a fake customer after a sync (canonical UTC instants,
/// extra fields as one JSON object).
pub fn stored(c: &FakeCustomer) -> Customer {
    use oms_sync::timefmt::canonical;
    let extra =
        (!c.extra.is_empty()).then(|| serde_json::Value::Object(c.extra.clone()).to_string());
    Customer::new(CustomerFields {
        id: c.id,
        created_date: Some(&canonical(&c.created_date)),
        modified_date: &canonical(&c.modified_date),
        omnitron_id: c.omnitron_id,
        email: c.email.as_deref(),
        first_name: c.first_name.as_deref(),
        last_name: c.last_name.as_deref(),
        phone_number: c.phone_number.as_deref(),
        erp_code: c.erp_code.as_deref(),
        channel: c.channel,
        extra: extra.as_deref(),
    })
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

pub fn secs(d: f64) -> String {
    if d < 1.0 {
        format!("{:.1} ms", d * 1000.0)
    } else {
        format!("{d:.2} s")
    }
}

/// A whole number with thousands separators.
pub fn rate(r: f64) -> String {
    let r = r.round() as u64;
    let s = r.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn remove_db(path: &Path) {
    for suffix in ["", "-wal", "-shm", ".lock"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
}

/// A `cargo bench` run passes `--bench`; `cargo test --all-targets` does not, and a benchmark
/// in a debug build would only waste the test run, so there it prints how to run it and stops.
pub fn run_by_cargo_bench(name: &str) -> bool {
    if std::env::args().any(|a| a == "--bench") {
        return true;
    }
    println!("benchmark skipped (not run by `cargo bench`); run: cargo bench --bench {name}");
    false
}

/// What one `oms-sync --backfill` child did.
pub struct ChildRun {
    pub wall: f64,
    pub peak_rss_kib: u64,
}

/// Runs `oms-sync --backfill` as a child against `oms` into a fresh warehouse in `dir`.
///
/// Peak RSS is the child's own high-water mark (`VmHWM` in `/proc/PID/status`), read until it
/// exits. Not `wait4`'s `ru_maxrss`: the child starts as a copy of this process (fork/vfork
/// before exec), and Linux keeps that image's RSS, the fake server's data included, in it.
pub async fn child_backfill(oms: &FakeOms, dir: &Path, page: u32, concurrency: u32) -> ChildRun {
    let db = dir.join("child.db");
    remove_db(&db);
    let run = child_backfill_into(
        oms,
        dir,
        page,
        concurrency,
        &format!("path = \"{}\"", db.display()),
    )
    .await;
    remove_db(&db);
    run
}

/// [`child_backfill`] into the warehouse that `warehouse_keys` (the body of the config's
/// `[warehouse]` table) names; the caller makes it fresh and removes it.
pub async fn child_backfill_into(
    oms: &FakeOms,
    dir: &Path,
    page: u32,
    concurrency: u32,
    warehouse_keys: &str,
) -> ChildRun {
    let cfg = dir.join("child.toml");
    std::fs::write(
        &cfg,
        format!(
            "[api]\nbase_url = \"{}\"\ntoken = \"{}\"\npage_size = {page}\nconcurrency = {concurrency}\n\
             [warehouse]\n{warehouse_keys}\n[log]\nlevel = \"warn\"\n",
            oms.base_url(),
            oms.token(),
        ),
    )
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_oms-sync");
    let started = Instant::now();
    let mut child = Command::new(bin)
        .arg("--config")
        .arg(&cfg)
        .arg("--backfill")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn oms-sync");
    let pid = child.id();
    let (status, peak_rss_kib) = tokio::task::spawn_blocking(move || {
        let mut peak = 0u64;
        loop {
            if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status"))
                && let Some(kib) = s
                    .lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            {
                peak = peak.max(kib);
            }
            if let Some(status) = child.try_wait().expect("wait for oms-sync") {
                return (status, peak);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    })
    .await
    .unwrap();
    let wall = started.elapsed().as_secs_f64();
    assert!(status.success(), "oms-sync --backfill failed: {status}");
    ChildRun { wall, peak_rss_kib }
}
