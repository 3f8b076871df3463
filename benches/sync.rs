//! End-to-end throughput of oms-sync against the fake OMS over loopback HTTP into a real SQLite
//! file, and with `--pg` into PostgreSQL beside it, with the limits each is measured against,
//! all in one run on one machine:
//!
//! ```text
//! cargo bench --bench sync                        # N = 1,000,000
//! OMS_BENCH_N=100000 cargo bench --bench sync     # quick run (3 runs of each figure)
//! cargo bench --bench sync -- --n 100000 --runs 3
//! cargo bench --bench sync -- --pg postgresql://postgres@127.0.0.1:54320/postgres
//! ```
//!
//! Settings (argument, else environment, else default):
//! - `--n N` / `OMS_BENCH_N`: customers (1,000,000);
//! - `--runs R` / `OMS_BENCH_RUNS`: runs per figure, the median is printed (3 up to 200,000
//!   customers, 1 above);
//! - `--quick` / `OMS_BENCH_QUICK=1`: page size 1000 with concurrency 1 only, no page-100 runs;
//! - `--pg URL` / `OMS_BENCH_PG_URL`: also PostgreSQL (backfill at page 1000, concurrency 1
//!   and 4, and the defaults; the incremental passes; the limits: one raw binary COPY of the
//!   same rows into the same table, indexes built after, and the raw loop of the product's
//!   unnest upsert; peak RSS of the binary), each warehouse in a fresh schema dropped after
//!   use. Unset: skipped, with a printed line;
//! - `--pg-only` / `OMS_BENCH_PG_ONLY=1` (with `--pg`): the PostgreSQL figures alone (the
//!   SQLite sections skipped), for a quicker run.
//!
//! Peak RSS is that of the real `oms-sync --backfill` binary run as a child process: its own
//! high-water mark (`VmHWM`), polled from `/proc` until it exits, so the fake server's memory
//! (which lives in this process) does not count (see `common::child_backfill`).
//!
//! The remote case (latency, server cap 100, concurrency 1..16) is `benches/remote.rs`.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::pg::{self, RAW_PG_ROWS, RawPg};
use common::{
    child_backfill, child_backfill_into, median, rate, remove_db, run_by_cargo_bench, secs,
};
use fake_oms::{FakeOms, FakeOmsConfig, synthetic_customers, touch_random};
use oms_sync::api::ApiClient;
use oms_sync::config::{
    ApiConfig, DEFAULT_CONCURRENCY, DEFAULT_LOOKBACK, DEFAULT_PAGE_SIZE, Secret, parse_base_url,
};
use oms_sync::resource::{Customer, Customers};
use oms_sync::sync::plan::RangePlanner;
use oms_sync::sync::{self, NoProgress, PassReport, SyncOptions};
use oms_sync::timefmt;
use oms_sync::warehouse::postgres::BulkPath;
use oms_sync::warehouse::sqlite::{UpsertSql, build_secondary_indexes};
use oms_sync::warehouse::{AnyWarehouse, SqliteWarehouse, Warehouse};
use tokio_util::sync::CancellationToken;

const SEED: u64 = 20_240_301;
/// Rows per transaction of the plain rusqlite loop.
const RAW_TX_ROWS: usize = 10_000;

struct Settings {
    n: usize,
    runs: usize,
    quick: bool,
    pg: Option<String>,
    /// The PostgreSQL figures alone.
    pg_only: bool,
}

fn settings() -> Settings {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let num = |name: &str, env: &str| -> Option<usize> {
        arg(name)
            .or_else(|| std::env::var(env).ok())
            .map(|v| v.replace(['_', ','], ""))
            .map(|v| {
                v.parse()
                    .unwrap_or_else(|_| panic!("{name}/{env}: not a number: {v}"))
            })
    };
    let n = num("--n", "OMS_BENCH_N").unwrap_or(1_000_000).max(1000);
    let runs = num("--runs", "OMS_BENCH_RUNS")
        .unwrap_or(if n <= 200_000 { 3 } else { 1 })
        .max(1);
    let quick = args.iter().any(|a| a == "--quick")
        || std::env::var("OMS_BENCH_QUICK").is_ok_and(|v| v == "1");
    let pg = pg::pg_url();
    let pg_only = pg.is_some()
        && (args.iter().any(|a| a == "--pg-only")
            || std::env::var("OMS_BENCH_PG_ONLY").is_ok_and(|v| v == "1"));
    Settings {
        n,
        runs,
        quick,
        pg,
        pg_only,
    }
}

fn main() {
    if !run_by_cargo_bench("sync") {
        return;
    }
    let s = settings();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(run(s));
}

/// One execution of the raw upsert, with `modified_date` given (an update moves it forward).
fn raw_upsert(
    stmt: &mut rusqlite::Statement<'_>,
    c: &Customer,
    modified_date: &str,
    now: &str,
) -> usize {
    stmt.execute(rusqlite::params![
        c.id,
        c.created_date(),
        modified_date,
        c.omnitron_id(),
        c.email(),
        c.first_name(),
        c.last_name(),
        c.phone_number(),
        c.erp_code(),
        c.channel(),
        c.extra(),
        now
    ])
    .unwrap()
}

/// The plain loop: a fresh warehouse (same migrations, same connection settings, the same
/// background checkpoints), one prepared INSERT ... ON CONFLICT, `RAW_TX_ROWS` rows per
/// transaction. `defer_indexes`: drop the secondary indexes first and build them after the
/// load with the product's own `build_secondary_indexes` (the time includes the build).
/// Returns rows/s.
fn raw_limit(records: &[&Customer], dir: &Path, defer_indexes: bool, sql: &UpsertSql) -> f64 {
    raw_load(records, dir, defer_indexes, 0.0, sql).load
}

/// `records` (in id order) in the order a backfill with `concurrency` ranges and pages of
/// `page` stores them: the ranges the product plans (`sync::plan::RangePlanner`, counted in
/// these records as the API would count them), their pages taken in turn. At concurrency > 1
/// every range but the last inserts in the middle of the table, which costs SQLite more than
/// appending (it rebalances full pages with their siblings); a raw loop in this order is the
/// same SQL in the same order.
fn range_order(records: &[Customer], concurrency: u32, page: usize) -> Vec<&Customer> {
    let (Some(first), Some(last)) = (records.first(), records.last()) else {
        return Vec::new();
    };
    // Each range holds the ids in (lo, hi]; the last one has no upper end.
    let mut ranges: Vec<&[Customer]> = Vec::new();
    let mut rest = records;
    let pages = (records.len() as u64).div_ceil(page.max(1) as u64);
    let planner = RangePlanner::new(first.id, last.id, concurrency.min(pages as u32), pages)
        .count_in(records, |c| c.id);
    for r in planner.ranges() {
        let cut =
            r.hi.map_or(rest.len(), |hi| rest.partition_point(|c| c.id <= hi));
        let (range, tail) = rest.split_at(cut);
        ranges.push(range);
        rest = tail;
    }
    let mut order = Vec::with_capacity(records.len());
    let mut pages: Vec<std::slice::Chunks<'_, Customer>> =
        ranges.iter().map(|r| r.chunks(page.max(1))).collect();
    loop {
        let before = order.len();
        for p in &mut pages {
            if let Some(chunk) = p.next() {
                order.extend(chunk);
            }
        }
        if order.len() == before {
            assert_eq!(order.len(), records.len(), "every record once");
            return order;
        }
    }
}

/// The product's own statements (`oms_sync::warehouse::sqlite::UpsertSql`): the same
/// parameters as [`raw_upsert_sql`] (the columns in order, then the sync time).
fn product_sql() -> UpsertSql {
    UpsertSql::new(&oms_sync::resource::customers::SPEC)
}

/// The plain statement as an [`UpsertSql`] without the second step.
fn simple_sql() -> UpsertSql {
    UpsertSql {
        upsert: raw_upsert_sql(),
        update: String::new(),
    }
}

/// One record through `upsert`, then `update` when that changed nothing (the product's way).
fn raw_store(
    upsert: &mut rusqlite::Statement<'_>,
    update: &mut Option<rusqlite::Statement<'_>>,
    c: &Customer,
    modified_date: &str,
    now: &str,
) {
    if raw_upsert(upsert, c, modified_date, now) == 0
        && let Some(update) = update
    {
        raw_upsert(update, c, modified_date, now);
    }
}

/// Bytes this process has sent to storage so far (`write_bytes` of `/proc/self/io`: pages it
/// dirtied in the page cache, so the fake server's socket writes do not count).
fn write_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("write_bytes:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// What [`raw_load`] measured.
struct RawRun {
    /// Rows/s of the load, index build included.
    load: f64,
    /// CPU seconds of the loop's thread before the index build.
    load_cpu: f64,
    /// Rows/s of the random updates.
    updates: f64,
    /// Bytes written per updated row, the WAL checkpointed.
    update_bytes: f64,
}

/// Loads like [`raw_limit`], then (with `update_fraction` > 0) updates that fraction of random
/// customers (a new, later `modified_date`) with the same plain loop in one transaction, the
/// write pattern of an incremental pass. `sql`: the upsert run by the loop. `records` are
/// stored in the order given.
fn raw_load(
    records: &[&Customer],
    dir: &Path,
    defer_indexes: bool,
    update_fraction: f64,
    sql: &UpsertSql,
) -> RawRun {
    let path = dir.join(format!("raw-{defer_indexes}.db"));
    let _ = std::fs::remove_file(&path);
    let wh = SqliteWarehouse::open(&path).expect("open");
    let conn = wh.connection();
    let now = timefmt::now_canonical();
    let started = Instant::now();
    let cpu_before = thread_cpu();
    if defer_indexes {
        conn.execute_batch("DROP INDEX customers_modified_date; DROP INDEX customers_email;")
            .unwrap();
    }
    {
        let mut stmt = conn.prepare(&sql.upsert).unwrap();
        let mut update = (!sql.update.is_empty()).then(|| conn.prepare(&sql.update).unwrap());
        for chunk in records.chunks(RAW_TX_ROWS) {
            conn.execute_batch("BEGIN IMMEDIATE").unwrap();
            for c in chunk {
                raw_store(&mut stmt, &mut update, c, c.modified_date(), &now);
            }
            conn.execute_batch("COMMIT").unwrap();
            wh.after_commit();
        }
    }
    let load_cpu = thread_cpu() - cpu_before;
    if defer_indexes {
        // The product's own build (its sorter settings), in one transaction as at the end of
        // a backfill.
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        build_secondary_indexes(conn, &oms_sync::resource::customers::SPEC).unwrap();
        conn.execute_batch("COMMIT").unwrap();
        wh.after_commit();
    }
    let r = records.len() as f64 / started.elapsed().as_secs_f64();
    let (mut u, mut bytes) = (0.0, 0.0);
    if update_fraction > 0.0 {
        // Spread evenly with a stride co-prime to typical sizes: random pages, like touch_random.
        let k = ((records.len() as f64 * update_fraction) as usize).max(1);
        let stride = 7919usize;
        let mut stmt = conn.prepare(&sql.upsert).unwrap();
        let mut update = (!sql.update.is_empty()).then(|| conn.prepare(&sql.update).unwrap());
        let later = timefmt::canonical(&chrono::Utc::now());
        // An empty WAL whose file is kept, as a daemon's pass finds it.
        conn.execute_batch("PRAGMA wal_checkpoint(RESTART)")
            .unwrap();
        let written = write_bytes();
        let started = Instant::now();
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        for j in 0..k {
            raw_store(
                &mut stmt,
                &mut update,
                records[(j * stride) % records.len()],
                &later,
                &now,
            );
        }
        conn.execute_batch("COMMIT").unwrap();
        wh.after_commit();
        u = k as f64 / started.elapsed().as_secs_f64();
        conn.execute_batch("PRAGMA wal_checkpoint(RESTART)")
            .unwrap();
        bytes = (write_bytes() - written) as f64 / k as f64;
    }
    drop(wh);
    remove_db(&path);
    RawRun {
        load: r,
        load_cpu,
        updates: u,
        update_bytes: bytes,
    }
}

/// The backfill runs measured: (page size, concurrency).
fn backfill_matrix(quick: bool) -> &'static [(u32, u32)] {
    if quick {
        &[(1000, 1)]
    } else {
        &[
            (1000, 1),
            (1000, 2),
            (1000, 4),
            (1000, 8),
            (100, 1),
            (100, 4),
            // The defaults.
            (DEFAULT_PAGE_SIZE, DEFAULT_CONCURRENCY),
        ]
    }
}

fn raw_upsert_sql() -> String {
    "INSERT INTO customers (id, created_date, modified_date, omnitron_id, email,
         first_name, last_name, phone_number, erp_code, channel, extra,
         deleted_at, synced_at, first_synced_at)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, NULL, ?12, ?12)
     ON CONFLICT(id) DO UPDATE SET created_date = excluded.created_date,
         modified_date = excluded.modified_date, omnitron_id = excluded.omnitron_id,
         email = excluded.email, first_name = excluded.first_name,
         last_name = excluded.last_name, phone_number = excluded.phone_number,
         erp_code = excluded.erp_code, channel = excluded.channel,
         extra = excluded.extra, synced_at = excluded.synced_at"
        .to_string()
}

fn api_config(oms: &FakeOms, page_size: u32, concurrency: u32) -> ApiConfig {
    ApiConfig {
        base_url: parse_base_url(&oms.base_url(), false).unwrap(),
        token: Secret::new(oms.token()),
        page_size,
        timeout: Duration::from_secs(60),
        max_retries: 3,
        retry_min_delay: Duration::from_millis(10),
        retry_max_delay: Duration::from_millis(200),
        max_requests_per_second: None,
        concurrency,
    }
}

fn options(page_size: u32, concurrency: u32, lookback: Duration) -> SyncOptions {
    SyncOptions {
        page_size,
        lookback,
        concurrency,
        history: false,
    }
}

/// Rows/s of fetching every page by id keyset and discarding it (the server's own rate);
/// with `parse`, each page also goes through the client's page parser.
async fn server_rate(oms: &FakeOms, ids: &[i64], page: usize, parse: bool) -> f64 {
    let http = reqwest::Client::new();
    let client = ApiClient::new(&api_config(oms, page as u32, 1)).unwrap();
    let url = oms.customers_url();
    let token = format!("Token {}", oms.token());
    let started = Instant::now();
    let mut rows = 0usize;
    let mut cursor: Option<i64> = None;
    let mut k = 0usize;
    loop {
        let mut q = vec![("sort", "id".to_string()), ("limit", page.to_string())];
        if let Some(c) = cursor {
            q.push(("id__gt", c.to_string()));
        }
        if parse {
            let mut lq = oms_sync::api::ListQuery::new();
            for (key, v) in q {
                lq = lq.with(key, v);
            }
            let p = client.list::<Customers>(&lq).await.unwrap();
            rows += p.len;
        } else {
            let body = http
                .get(&url)
                .query(&q)
                .header("Authorization", &token)
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            assert!(body.len() > 20);
        }
        k += page;
        if k >= ids.len() {
            break;
        }
        if !parse {
            rows += page;
        }
        cursor = Some(ids[k - 1]);
    }
    if !parse {
        rows += ids.len() - (k - page);
    }
    assert_eq!(rows, ids.len());
    rows as f64 / started.elapsed().as_secs_f64()
}

async fn server_warm(oms: &FakeOms) -> reqwest::Result<()> {
    reqwest::Client::new()
        .get(oms.customers_url())
        .query(&[("sort", "modified_date"), ("limit", "1")])
        .header("Authorization", format!("Token {}", oms.token()))
        .send()
        .await?
        .bytes()
        .await
        .map(|_| ())
}

/// CPU seconds the calling thread has used (`utime + stime` of `/proc/thread-self/stat`).
fn thread_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line (11 and 12 after the name), in clock
    // ticks of 1/100 s on Linux.
    (ticks(11) + ticks(12)) / 100.0
}

/// Told of each commit on the writer's thread: keeps that thread's CPU time at the first and
/// the last commit, i.e. what the writer spent on the load phase (before the index build).
#[derive(Default)]
struct WriterCpu(std::sync::Mutex<Option<(f64, f64)>>);

impl sync::Progress for WriterCpu {
    fn committed(&self, _stream: &'static str, _stats: &oms_sync::warehouse::RowStats) {
        let now = thread_cpu();
        if let Ok(mut span) = self.0.lock() {
            *span = Some(span.map_or((now, now), |(first, _)| (first, now)));
        }
    }
}

impl WriterCpu {
    fn load_phase(&self) -> f64 {
        self.0
            .lock()
            .ok()
            .and_then(|s| *s)
            .map_or(0.0, |(first, last)| last - first)
    }
}

async fn backfill(
    oms: &FakeOms,
    db: &Path,
    page: u32,
    concurrency: u32,
) -> (SqliteWarehouse, PassReport, f64) {
    backfill_into(oms, SqliteWarehouse::open(db).unwrap(), page, concurrency).await
}

/// `backfill_pass` into `wh` (empty: a first load), whichever backend it is; also returns the
/// writer thread's CPU seconds in the load phase.
async fn backfill_into<W: Warehouse + 'static>(
    oms: &FakeOms,
    wh: W,
    page: u32,
    concurrency: u32,
) -> (W, PassReport, f64) {
    let client = ApiClient::new(&api_config(oms, page, concurrency)).unwrap();
    let cpu = Arc::new(WriterCpu::default());
    let (wh, r) = sync::backfill_pass::<Customers, _>(
        &client,
        wh,
        &options(page, concurrency, Duration::ZERO),
        &CancellationToken::new(),
        cpu.clone(),
    )
    .await;
    (wh, r.expect("backfill succeeds"), cpu.load_phase())
}

async fn incremental<W: Warehouse + 'static>(
    oms: &FakeOms,
    wh: W,
    page: u32,
    lookback: Duration,
) -> (W, PassReport) {
    let client = ApiClient::new(&api_config(oms, page, 1)).unwrap();
    let (wh, r) = sync::incremental_pass::<Customers, _>(
        &client,
        wh,
        &options(page, 1, lookback),
        &CancellationToken::new(),
        Arc::new(NoProgress),
    )
    .await;
    (wh, r.expect("incremental pass succeeds"))
}

/// The raw PostgreSQL loops' rows/s (see `common::pg::raw_load`).
struct RawPgFigures {
    /// One binary COPY of every row, indexes built after (the limit of a first load).
    copy: f64,
    maintained: f64,
    deferred: f64,
    updates: f64,
}

/// What the incremental passes on the PostgreSQL warehouse measured.
struct PgIncFigures {
    nochange: PassReport,
    nochange_walls: Vec<f64>,
    nochange_requests: Vec<f64>,
    quiet_default: PassReport,
    quiet_default_wall: f64,
    changed: PassReport,
    changed_walls: Vec<f64>,
    /// The same pass with `BulkPath::Copy` (COPY into staging, then merge).
    changed_copy_walls: Vec<f64>,
}

/// The incremental passes of the SQLite section on the backfilled PostgreSQL warehouse: no
/// change, after 1% changed (`runs` times), then no change with the default lookback.
async fn pg_incremental(
    oms: &FakeOms,
    wh: AnyWarehouse,
    runs: usize,
) -> (AnyWarehouse, PgIncFigures) {
    // The SQLite passes changed customers since this warehouse's backfill: catch up first
    // (not timed), so the next pass really has nothing to do.
    let _ = server_warm(oms).await;
    let (mut wh, _) = incremental(oms, wh, 1000, Duration::ZERO).await;
    let mut nochange_walls = Vec::new();
    let mut nochange_requests = Vec::new();
    let mut nochange = None;
    for _ in 0..runs.max(3) {
        let started = Instant::now();
        let (w, r) = incremental(oms, wh, 1000, Duration::ZERO).await;
        wh = w;
        nochange_walls.push(started.elapsed().as_secs_f64());
        nochange_requests.push(r.requests as f64);
        assert_eq!(r.stats.inserted + r.stats.updated, 0);
        nochange = Some(r);
    }
    let mut changed_walls = Vec::new();
    let mut changed_copy_walls = Vec::new();
    let mut changed = None;
    // The two paths for rows that exist, alternately: the unnest upsert (the default), then
    // COPY into staging and one merge.
    for run_no in 0..2 * runs {
        let bulk = if run_no % 2 == 0 {
            BulkPath::Unnest
        } else {
            BulkPath::Copy
        };
        if let AnyWarehouse::Postgres(p) = &mut wh {
            p.set_bulk_path(bulk);
        }
        let seed = SEED + 1000 + run_no as u64;
        let touched = oms.with_store(|st| touch_random(st, 0.01, seed));
        let _ = server_warm(oms).await;
        let started = Instant::now();
        let (w, r) = incremental(oms, wh, 1000, Duration::ZERO).await;
        wh = w;
        let walls = match bulk {
            BulkPath::Unnest => &mut changed_walls,
            BulkPath::Copy => &mut changed_copy_walls,
        };
        walls.push(started.elapsed().as_secs_f64());
        assert_eq!(
            r.stats.updated,
            touched.len() as u64,
            "every touched row updated"
        );
        changed = Some(r);
    }
    if let AnyWarehouse::Postgres(p) = &mut wh {
        p.set_bulk_path(BulkPath::default());
    }
    let started = Instant::now();
    let (wh, quiet_default) = incremental(oms, wh, 1000, DEFAULT_LOOKBACK).await;
    let quiet_default_wall = started.elapsed().as_secs_f64();
    assert_eq!(
        quiet_default.stats.inserted + quiet_default.stats.updated,
        0
    );
    let figures = PgIncFigures {
        nochange: nochange.expect("at least one quiet pass"),
        nochange_walls,
        nochange_requests,
        quiet_default,
        quiet_default_wall,
        changed: changed.expect("at least one run"),
        changed_walls,
        changed_copy_walls,
    };
    (wh, figures)
}

/// What a pass finds: an empty WAL whose file is kept (a daemon between passes), or none.
#[derive(Clone, Copy)]
enum WalState {
    Kept,
    New,
}

/// Checkpoints everything; the next commit starts the WAL from its head. `RESTART` keeps the
/// file (and its pages in the OS cache), `TRUNCATE` empties it like a new process's.
fn checkpoint_to(wh: &SqliteWarehouse, wal: WalState) {
    let mode = match wal {
        WalState::Kept => "RESTART",
        WalState::New => "TRUNCATE",
    };
    wh.connection()
        .execute_batch(&format!("PRAGMA wal_checkpoint({mode})"))
        .expect("checkpoint");
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// The incremental passes on the page-1000 SQLite warehouse; prints their rows of the table
/// and returns the bytes-written line printed after it.
async fn sqlite_incremental(
    oms: &FakeOms,
    kept: (SqliteWarehouse, PathBuf),
    runs: usize,
    raw_updates: f64,
    raw_update_bytes: f64,
) -> String {
    let (mut wh, _db) = kept;
    let mut nochange = Vec::new();
    let mut nochange_requests = Vec::new();
    let mut nochange_stats = Default::default();
    for _ in 0..runs.max(3) {
        let started = Instant::now();
        let (w, r) = incremental(oms, wh, 1000, Duration::ZERO).await;
        wh = w;
        nochange.push(started.elapsed().as_secs_f64());
        nochange_requests.push(r.requests as f64);
        assert_eq!(r.stats.inserted + r.stats.updated, 0);
        nochange_stats = r.stats;
    }
    // The pass after 1% changed, in the two states a pass can find the WAL in: a daemon's
    // (emptied by the last checkpoint, its file kept for reuse) and a new process's (no WAL
    // file yet, as for every `--once` run: SQLite deletes it when the last connection closes).
    let mut changed_walls = [Vec::new(), Vec::new()];
    let mut changed_bytes = [Vec::new(), Vec::new()];
    let mut changed_report = None;
    let mut lookback_report = None;
    for run_no in 0..runs {
        for (k, wal) in [WalState::Kept, WalState::New].into_iter().enumerate() {
            let seed = SEED + (2 * run_no + k) as u64;
            let touched = oms.with_store(|st| touch_random(st, 0.01, seed));
            // The fake server re-sorts its date index on the first request after a change;
            // do that outside the timed pass (a real OMS's database keeps its index).
            let _ = server_warm(oms).await;
            // Bytes written: from an empty WAL to an empty WAL again, so what the pass left
            // for the next checkpoint counts too.
            checkpoint_to(&wh, wal);
            let written = write_bytes();
            let started = Instant::now();
            let (w, r) = incremental(oms, wh, 1000, Duration::ZERO).await;
            wh = w;
            changed_walls[k].push(started.elapsed().as_secs_f64());
            checkpoint_to(&wh, wal);
            changed_bytes[k].push((write_bytes() - written) as f64 / r.stats.updated.max(1) as f64);
            assert_eq!(
                r.stats.updated,
                touched.len() as u64,
                "every touched row updated"
            );
            changed_report = Some(r);
        }
        if run_no == runs - 1 {
            // Read the same rows again through a lookback window: no row may be rewritten.
            let started = Instant::now();
            let (w, r) = incremental(oms, wh, 1000, Duration::from_secs(30 * 86_400)).await;
            wh = w;
            lookback_report = Some((r, started.elapsed().as_secs_f64()));
        }
    }
    // What a quiet pass costs with the default lookback (it re-reads the window behind the mark).
    let started = Instant::now();
    let (w, quiet_default) = incremental(oms, wh, 1000, DEFAULT_LOOKBACK).await;
    wh = w;
    let quiet_default_wall = started.elapsed().as_secs_f64();
    assert_eq!(
        quiet_default.stats.inserted + quiet_default.stats.updated,
        0
    );
    let changed = changed_report.expect("at least one run");
    println!(
        "| no change since the last pass | {} | {} | {} | - | {} / {} / {} |",
        nochange_stats.fetched,
        median(nochange_requests),
        secs(median(nochange)),
        nochange_stats.inserted,
        nochange_stats.updated,
        nochange_stats.unchanged
    );
    println!(
        "| no change, default lookback ({}) | {} | {} | {} | - | {} / {} / {} |",
        humantime::format_duration(DEFAULT_LOOKBACK),
        quiet_default.stats.fetched,
        quiet_default.requests,
        secs(quiet_default_wall),
        quiet_default.stats.inserted,
        quiet_default.stats.updated,
        quiet_default.stats.unchanged
    );
    for (k, label) in [
        "after 1% of customers changed (daemon: WAL file kept)",
        "after 1% of customers changed (new process: no WAL file yet)",
    ]
    .into_iter()
    .enumerate()
    {
        let wall = median(changed_walls[k].clone());
        let speed = changed.stats.fetched as f64 / wall;
        println!(
            "| {label} | {} | {} | {} | {} ({:.0}% of the raw random-update loop) | {} / {} / {} |",
            changed.stats.fetched,
            changed.requests,
            secs(wall),
            rate(speed),
            100.0 * speed / raw_updates,
            changed.stats.inserted,
            changed.stats.updated,
            changed.stats.unchanged
        );
    }
    if let Some((r, wall)) = lookback_report {
        println!(
            "| lookback re-read of those rows (unchanged) | {} | {} | {} | {} | {} / {} / {} |",
            r.stats.fetched,
            r.requests,
            secs(wall),
            rate(r.stats.fetched as f64 / wall),
            r.stats.inserted,
            r.stats.updated,
            r.stats.unchanged
        );
        assert_eq!(
            r.stats.inserted + r.stats.updated,
            0,
            "a re-read must not write"
        );
    }
    drop(wh);
    format!(
        "\nbytes written per changed row by the pass after 1% changed (write_bytes of this process, WAL checkpointed before and after): {:.0} with the WAL file kept, {:.0} from no WAL file (raw loop of the same SQL in one transaction, WAL file kept: {raw_update_bytes:.0})",
        median(changed_bytes[0].clone()),
        median(changed_bytes[1].clone())
    )
}

async fn run(s: Settings) {
    let n = s.n;
    let runs = s.runs;
    let dir = tempfile::tempdir().expect("temp dir");
    println!(
        "oms-sync benchmark: N = {} customers, {} run(s) per figure (median), {} CPUs",
        rate(n as f64),
        runs,
        std::thread::available_parallelism().map_or(0, |p| p.get())
    );
    match &s.pg {
        Some(url) => println!(
            "PostgreSQL: {} (server {}), fresh schema per warehouse",
            pg::config(url, "public").redacted_url(),
            pg::server_version(url)
        ),
        None => println!(
            "PostgreSQL: skipped (set --pg URL or OMS_BENCH_PG_URL to measure it beside SQLite)"
        ),
    }
    let t = Instant::now();
    let customers = synthetic_customers(n, SEED);
    let records: Vec<Customer> = customers.iter().map(common::stored).collect();
    let ids: Vec<i64> = customers.iter().map(|c| c.id).collect();
    let oms = FakeOms::start(
        FakeOmsConfig {
            max_limit: 1000,
            ..FakeOmsConfig::default()
        },
        customers,
    )
    .await
    .expect("fake OMS");
    oms.knobs(|k| k.record_requests = false);
    println!(
        "setup: {} (data generation, server start)\n",
        secs(t.elapsed().as_secs_f64())
    );

    // Limits.
    let simple = simple_sql();
    let product = product_sql();
    let by_id: Vec<&Customer> = records.iter().collect();
    // `--pg-only`: no SQLite run (its figures read 0 and are not printed).
    let sqlite_runs = if s.pg_only { 0 } else { runs };
    let median = |v: Vec<f64>| if v.is_empty() { 0.0 } else { median(v) };
    let raw: Vec<f64> = (0..sqlite_runs)
        .map(|_| raw_limit(&by_id, dir.path(), false, &simple))
        .collect();
    let raw = median(raw);
    let raw_deferred: Vec<f64> = (0..sqlite_runs)
        .map(|_| raw_limit(&by_id, dir.path(), true, &simple))
        .collect();
    let raw_deferred = median(raw_deferred);
    // The product's own statement, indexes after the load (what a backfill does), then 1%
    // random updates (what an incremental pass writes).
    let product_runs: Vec<RawRun> = (0..sqlite_runs)
        .map(|_| raw_load(&by_id, dir.path(), true, 0.01, &product))
        .collect();
    let raw_product = median(product_runs.iter().map(|r| r.load).collect());
    let raw_product_load_cpu = median(product_runs.iter().map(|r| r.load_cpu).collect());
    let raw_updates = median(product_runs.iter().map(|r| r.updates).collect());
    let raw_update_bytes = median(product_runs.iter().map(|r| r.update_bytes).collect());
    // PostgreSQL: the product's unnest upsert in a plain loop, indexes kept up to date, and
    // built after the load followed by 1% random updates (what backfill and incremental do).
    let raw_pg = s.pg.as_deref().map(|url| {
        let schema = pg::schema_name("raw");
        let copy: Vec<f64> = (0..runs)
            .map(|_| pg::raw_copy(url, &schema, &records))
            .collect();
        let maintained: Vec<f64> = (0..runs)
            .map(|_| pg::raw_load(url, &schema, &records, false, 0.0).load)
            .collect();
        let deferred: Vec<RawPg> = (0..runs)
            .map(|_| pg::raw_load(url, &schema, &records, true, 0.01))
            .collect();
        RawPgFigures {
            copy: median(copy),
            maintained: median(maintained),
            deferred: median(deferred.iter().map(|r| r.load).collect()),
            updates: median(deferred.iter().map(|r| r.updates).collect()),
        }
    });
    // The product's SQL in each backfill's own order (its ranges' pages interleaved), indexes
    // after the load: for concurrency 1 that is the id order above.
    let matrix = if s.pg_only {
        &[]
    } else {
        backfill_matrix(s.quick)
    };
    let raw_in_order: Vec<f64> = matrix
        .iter()
        .map(|&(page, conc)| {
            if conc == 1 {
                return raw_product;
            }
            let order = range_order(&records, conc, page as usize);
            median(
                (0..runs)
                    .map(|_| raw_limit(&order, dir.path(), true, &product))
                    .collect(),
            )
        })
        .collect();
    drop(by_id);
    drop(records);
    let mut srv = Vec::new();
    let mut srv_parse = Vec::new();
    // At page 100 and concurrency 1 each request waits for the one before it, whose cursor is
    // known once its page is parsed: this serial chain, with no write at all, is the most
    // such a backfill can reach here.
    let mut srv_parse_100 = Vec::new();
    for _ in 0..runs {
        srv.push(server_rate(&oms, &ids, 1000, false).await);
        srv_parse.push(server_rate(&oms, &ids, 1000, true).await);
        if !s.quick {
            srv_parse_100.push(server_rate(&oms, &ids, 100, true).await);
        }
    }
    let srv = median(srv);
    let srv_parse = median(srv_parse);
    let srv_parse_100 = (!srv_parse_100.is_empty()).then(|| median(srv_parse_100));
    println!("| limit | rows/s |\n|---|---:|");
    if !s.pg_only {
        println!(
            "| raw SQLite upsert loop, indexes maintained ({RAW_TX_ROWS} rows/tx) | {} |",
            rate(raw)
        );
        println!(
            "| raw SQLite upsert loop, indexes built after the load | {} |",
            rate(raw_deferred)
        );
        println!(
            "| raw loop of the product's upsert (`UpsertSql`), indexes built after the load | {} |",
            rate(raw_product)
        );
        println!(
            "| raw loop of the product's upsert, 1% random existing rows updated (one tx, indexes on, WAL file kept; {raw_update_bytes:.0} bytes written per row) | {} |",
            rate(raw_updates)
        );
    }
    if let Some(r) = &raw_pg {
        println!(
            "| raw PostgreSQL binary COPY of all rows in one statement, secondary indexes built after (the limit of a first load) | {} |",
            rate(r.copy)
        );
        println!(
            "| raw PostgreSQL loop of the product's unnest upsert, indexes maintained ({RAW_PG_ROWS} rows/statement) | {} |",
            rate(r.maintained)
        );
        println!(
            "| raw PostgreSQL loop of the product's unnest upsert, indexes built after the load | {} |",
            rate(r.deferred)
        );
        println!(
            "| raw PostgreSQL loop of the product's unnest upsert, 1% random existing rows updated ({RAW_PG_ROWS} rows/statement, indexes on) | {} |",
            rate(r.updates)
        );
    }
    println!(
        "| fake server, fetch and discard (id keyset, page 1000) | {} |",
        rate(srv)
    );
    println!(
        "| fake server + client page parse (id keyset, page 1000) | {} |",
        rate(srv_parse)
    );
    if let Some(r) = srv_parse_100.filter(|_| !s.pg_only) {
        println!(
            "| fake server + client page parse (id keyset, page 100, one request at a time: the most a page-100 backfill at concurrency 1 can reach here, {:.0}% of the raw loop of the product's SQL) | {} |",
            100.0 * r / raw_product,
            rate(r)
        );
    }
    println!();

    // Backfill matrix (library backfill_pass into an empty warehouse).
    if !s.pg_only {
        println!(
            "| backfill (library) | page | concurrency | rows/s | wall | vs raw loop of the product's SQL (indexes after) | vs the same raw loop in the backfill's order (its ranges' pages in turn) | vs raw simple SQL (indexes after) | vs raw loop, indexes maintained (SQLite: simple SQL; PostgreSQL: the product's) | writer thread CPU before the index build (raw loop of the product's SQL: {}) |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            secs(raw_product_load_cpu)
        );
    }
    let mut kept: Option<(SqliteWarehouse, PathBuf)> = None;
    let mut bytes_per_customer = 0.0;
    for (&(page, conc), &raw_ordered) in matrix.iter().zip(&raw_in_order) {
        let mut walls = Vec::new();
        let mut writer_cpus = Vec::new();
        for run_no in 0..runs {
            let db = dir.path().join(format!("bf-{page}-{conc}-{run_no}.db"));
            let started = Instant::now();
            let (wh, report, writer_cpu) = backfill(&oms, &db, page, conc).await;
            writer_cpus.push(writer_cpu);
            walls.push(started.elapsed().as_secs_f64());
            assert_eq!(report.stats.inserted, n as u64, "every customer inserted");
            let last = run_no == runs - 1;
            if page == 1000 && conc == 1 && last && kept.is_none() {
                drop(wh);
                bytes_per_customer = file_size(&db) as f64 / n as f64;
                kept = Some((SqliteWarehouse::open(&db).unwrap(), db));
            } else {
                drop(wh);
                remove_db(&db);
            }
        }
        let wall = median(walls);
        let r = n as f64 / wall;
        println!(
            "| `backfill_pass` | {page} | {conc} | {} | {} | {:.0}% | {:.0}% ({}) | {:.0}% | {:.0}% | {} |",
            rate(r),
            secs(wall),
            100.0 * r / raw_product,
            100.0 * r / raw_ordered,
            rate(raw_ordered),
            100.0 * r / raw_deferred,
            100.0 * r / raw,
            secs(median(writer_cpus))
        );
    }
    // PostgreSQL: the same passes, each into a fresh schema; the page-1000 concurrency-1
    // warehouse is kept for the incremental passes.
    let mut pg_kept: Option<(AnyWarehouse, String)> = None;
    if let (Some(url), Some(raw_pg)) = (s.pg.as_deref(), &raw_pg) {
        let pg_matrix: &[(u32, u32)] = if s.quick {
            &[(1000, 1)]
        } else {
            &[
                (1000, 1),
                (1000, 4),
                (DEFAULT_PAGE_SIZE, DEFAULT_CONCURRENCY),
            ]
        };
        println!(
            "\n| backfill (library), PostgreSQL | page | concurrency | rows/s | wall | vs the raw binary COPY (indexes after) | vs raw loop of the product's unnest upsert (indexes after) | vs that loop, indexes maintained | pages by COPY straight into the table |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for &(page, conc) in pg_matrix {
            let mut walls = Vec::new();
            let mut copied = (0, 0);
            for run_no in 0..runs {
                let schema = pg::schema_name(&format!("bf_{page}_{conc}_{run_no}"));
                let wh = pg::open_fresh(url, &schema);
                let started = Instant::now();
                let (wh, report, _) = backfill_into(&oms, wh, page, conc).await;
                walls.push(started.elapsed().as_secs_f64());
                assert_eq!(report.stats.inserted, n as u64, "every customer inserted");
                if let AnyWarehouse::Postgres(p) = &wh {
                    copied = (p.pages_copied(), report.pages);
                }
                if page == 1000 && conc == 1 && run_no == runs - 1 && pg_kept.is_none() {
                    pg_kept = Some((wh, schema));
                } else {
                    drop(wh);
                    pg::drop_schema(url, &schema);
                }
            }
            let wall = median(walls);
            let r = n as f64 / wall;
            println!(
                "| `backfill_pass`, PostgreSQL | {page} | {conc} | {} | {} | **{:.0}%** | {:.0}% | {:.0}% | {} of {} |",
                rate(r),
                secs(wall),
                100.0 * r / raw_pg.copy,
                100.0 * r / raw_pg.deferred,
                100.0 * r / raw_pg.maintained,
                copied.0,
                copied.1
            );
        }
    }
    println!();

    let pg_inc = match pg_kept {
        Some((wh, schema)) => Some((pg_incremental(&oms, wh, runs).await, schema)),
        None => None,
    };
    println!(
        "| incremental pass | rows fetched | requests | wall | rows/s | inserted / updated / unchanged |\n|---|---:|---:|---:|---:|---|"
    );
    let bytes_line = match kept {
        Some(kept) => sqlite_incremental(&oms, kept, runs, raw_updates, raw_update_bytes).await,
        None => String::new(),
    };
    if let (Some(((pwh, f), schema)), Some(raw_pg)) = (pg_inc, &raw_pg) {
        let row = |label: String, r: &PassReport, requests: String, wall: f64, speed: String| {
            println!(
                "| PostgreSQL: {label} | {} | {requests} | {} | {speed} | {} / {} / {} |",
                r.stats.fetched,
                secs(wall),
                r.stats.inserted,
                r.stats.updated,
                r.stats.unchanged
            );
        };
        row(
            "no change since the last pass".into(),
            &f.nochange,
            median(f.nochange_requests.clone()).to_string(),
            median(f.nochange_walls.clone()),
            "-".into(),
        );
        row(
            format!(
                "no change, default lookback ({})",
                humantime::format_duration(DEFAULT_LOOKBACK)
            ),
            &f.quiet_default,
            f.quiet_default.requests.to_string(),
            f.quiet_default_wall,
            "-".into(),
        );
        let changed = median(f.changed_walls.clone());
        let speed = f.changed.stats.fetched as f64 / changed;
        row(
            "after 1% of customers changed".into(),
            &f.changed,
            f.changed.requests.to_string(),
            changed,
            format!(
                "{} ({:.0}% of the raw PostgreSQL random-update loop)",
                rate(speed),
                100.0 * speed / raw_pg.updates
            ),
        );
        let copy_wall = median(f.changed_copy_walls.clone());
        let copy_speed = f.changed.stats.fetched as f64 / copy_wall;
        row(
            "after 1% changed, COPY into staging then merge (`BulkPath::Copy`)".into(),
            &f.changed,
            f.changed.requests.to_string(),
            copy_wall,
            format!(
                "{} ({:.2}× the unnest upsert's rows/s)",
                rate(copy_speed),
                copy_speed / speed
            ),
        );
        drop(pwh);
        if let Some(url) = s.pg.as_deref() {
            pg::drop_schema(url, &schema);
        }
    }
    println!("{bytes_line}");
    println!();

    // Peak RSS of the real binary (child process), at N/10 and N.
    println!(
        "| `oms-sync --backfill` (child process) | customers | page | concurrency | wall | rows/s | peak RSS |\n|---|---:|---:|---:|---:|---:|---:|"
    );
    let small_n = (n / 10).max(1000);
    let small = FakeOms::start(FakeOmsConfig::default(), synthetic_customers(small_n, SEED))
        .await
        .expect("fake OMS");
    small.knobs(|k| k.record_requests = false);
    let rss_cases: Vec<(&FakeOms, usize, u32, u32)> = if s.quick {
        vec![(&small, small_n, 1000, 1), (&oms, n, 1000, 1)]
    } else {
        vec![
            (&small, small_n, 1000, 1),
            (&oms, n, 1000, 1),
            (&small, small_n, 1000, 4),
            (&oms, n, 1000, 4),
        ]
    };
    for &(server, count, page, conc) in rss_cases.iter().filter(|_| !s.pg_only) {
        let mut walls = Vec::new();
        let mut rss = Vec::new();
        for _ in 0..runs {
            let run = child_backfill(server, dir.path(), page, conc).await;
            walls.push(run.wall);
            rss.push(run.peak_rss_kib as f64);
        }
        let wall = median(walls);
        println!(
            "| `--backfill` | {} | {page} | {conc} | {} | {} | {:.1} MiB |",
            rate(count as f64),
            secs(wall),
            rate(count as f64 / wall),
            median(rss) / 1024.0
        );
    }
    if let Some(url) = s.pg.as_deref() {
        // The same cases as SQLite's above.
        for &(server, count, page, conc) in &rss_cases {
            let mut walls = Vec::new();
            let mut rss = Vec::new();
            let schema = pg::schema_name("child");
            for _ in 0..runs {
                pg::drop_schema(url, &schema);
                let keys = format!("url = \"{url}\"\nschema = \"{schema}\"");
                let run = child_backfill_into(server, dir.path(), page, conc, &keys).await;
                walls.push(run.wall);
                rss.push(run.peak_rss_kib as f64);
            }
            pg::drop_schema(url, &schema);
            let wall = median(walls);
            println!(
                "| `--backfill`, PostgreSQL | {} | {page} | {conc} | {} | {} | {:.1} MiB |",
                rate(count as f64),
                secs(wall),
                rate(count as f64 / wall),
                median(rss) / 1024.0
            );
        }
    }
    println!();
    if !s.pg_only {
        println!(
            "warehouse file size: {bytes_per_customer:.0} bytes per customer (after a page-1000 backfill, WAL checkpointed)"
        );
    }
    small.shutdown().await;
    oms.shutdown().await;
}
