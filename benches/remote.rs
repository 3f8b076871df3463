//! What users of a remote OMS feel: backfills through the real `oms-sync --backfill` binary
//! (a child process) against the fake OMS in this process with a per-request latency and a
//! server page cap of 100, for `api.concurrency` 1, 2, 4, 8 and 16.
//!
//! ```text
//! cargo bench --bench remote                          # N = 200,000 at 50 ms and 150 ms
//! cargo bench --bench remote -- --n 50000 --latency 50
//! cargo bench --bench remote -- --full                # concurrency 1 and 2 at N too (~8 min more)
//! cargo bench --bench remote -- --latency 50 --gap     # ids with a gap (see below)
//! cargo bench --bench remote -- --throttle 20,40       # a throttled OMS (see below)
//! ```
//!
//! Settings (argument, else environment, else default):
//! - `--n N` / `OMS_REMOTE_N`: customers (200,000);
//! - `--latency MS[,MS...]` / `OMS_REMOTE_LATENCY`: per-request latency (50,150);
//! - `--jitter MS` / `OMS_REMOTE_JITTER`: up to this much more per request, uniform (0);
//! - `--full` / `OMS_REMOTE_FULL=1`: run concurrency 1 and 2 on all N customers. Without it they
//!   run on N/10 and their wall time is scaled by 10 (they are bound by pages × latency, so
//!   that is what they would take; the table says which rows were scaled).
//! - `--gap` / `OMS_REMOTE_GAP=1`: the newest 1% of customers get ids 1,000,000,000 higher, as
//!   a later block of ids (an import, a sequence moved on) leaves them: an even split of the
//!   id span would put 99% of the customers in the first range.
//!
//! - `--throttle RATE[,RATE...]` / `OMS_REMOTE_THROTTLE`: instead of the above, backfills at
//!   concurrency 8 against the fake's DRF-style throttle of RATE requests/s (N defaults to
//!   30,000 here, latency to its first value), each rate four times: with and without
//!   `Retry-After`, steady and with the rate halved a third of the way through the bound and
//!   restored at two thirds. It prints wall ÷ bound (pages ÷ rate; 7/6 of it with the change)
//!   and the share of requests answered 429.
//!
//! For each run it prints wall time, requests the server answered, rows/s, the child's peak
//! RSS (`VmHWM`, see `common::child_backfill`), and the sequential bound: requests × mean
//! latency / concurrency, the wall time if the requests were spread perfectly over the ranges
//! and nothing else cost anything.

mod common;

use std::time::Duration;

use common::{child_backfill, rate, run_by_cargo_bench, secs};
use fake_oms::{FakeOms, FakeOmsConfig, synthetic_customers};

const SEED: u64 = 20_240_301;
/// The server's page cap (DRF `max_page_size`), and the page size asked for.
const PAGE: u32 = 100;
const CONCURRENCY: [u32; 5] = [1, 2, 4, 8, 16];

struct Settings {
    n: usize,
    latencies: Vec<u64>,
    jitter: u64,
    full: bool,
    gap: bool,
    throttle: Vec<u32>,
}

/// How far `--gap` moves the newest 1% of ids.
const GAP: i64 = 1_000_000_000;

fn settings() -> Settings {
    let args: Vec<String> = std::env::args().collect();
    let get = |name: &str, env: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
            .or_else(|| std::env::var(env).ok())
    };
    let num = |v: &str| -> u64 {
        let v = v.replace(['_', ','], "");
        v.parse().unwrap_or_else(|_| panic!("not a number: {v}"))
    };
    let throttle: Vec<u32> = get("--throttle", "OMS_REMOTE_THROTTLE").map_or(vec![], |v| {
        v.split(',').map(|x| num(x.trim()) as u32).collect()
    });
    let default_n = if throttle.is_empty() { 200_000 } else { 30_000 };
    let n = get("--n", "OMS_REMOTE_N").map_or(default_n, |v| num(&v) as usize);
    let latencies = get("--latency", "OMS_REMOTE_LATENCY").map_or(vec![50, 150], |v| {
        v.split(',').map(|x| num(x.trim())).collect()
    });
    let jitter = get("--jitter", "OMS_REMOTE_JITTER").map_or(0, |v| num(&v));
    let full = args.iter().any(|a| a == "--full")
        || std::env::var("OMS_REMOTE_FULL").is_ok_and(|v| v == "1");
    let gap = args.iter().any(|a| a == "--gap")
        || std::env::var("OMS_REMOTE_GAP").is_ok_and(|v| v == "1");
    Settings {
        n: n.max(PAGE as usize * 20),
        latencies,
        jitter,
        full,
        gap,
        throttle,
    }
}

fn main() {
    if !run_by_cargo_bench("remote") {
        return;
    }
    let s = settings();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    if s.throttle.is_empty() {
        rt.block_on(run(s));
    } else {
        rt.block_on(run_throttled(s));
    }
}

async fn server(n: usize, latency: Duration, jitter: Duration, gap: bool) -> FakeOms {
    let mut customers = synthetic_customers(n, SEED);
    if gap {
        // The ids come in ascending order: the last 1% are the newest.
        for c in &mut customers[n - n / 100..] {
            c.id += GAP;
        }
    }
    let oms = FakeOms::start(
        FakeOmsConfig {
            max_limit: PAGE as usize,
            ..FakeOmsConfig::default()
        },
        customers,
    )
    .await
    .expect("fake OMS");
    oms.knobs(|k| {
        k.record_requests = false;
        k.latency = latency;
        k.latency_jitter = jitter;
    });
    oms
}

async fn run(s: Settings) {
    let dir = tempfile::tempdir().expect("temp dir");
    println!(
        "oms-sync remote backfill benchmark: N = {} customers{}, server cap {PAGE}, jitter {} ms, {} CPUs{}",
        rate(s.n as f64),
        if s.gap {
            " (the newest 1% with ids 1,000,000,000 higher)"
        } else {
            ""
        },
        s.jitter,
        std::thread::available_parallelism().map_or(0, |p| p.get()),
        if s.full {
            ""
        } else {
            "; concurrency 1 and 2 on N/10, wall time scaled by 10 (*)"
        }
    );
    println!(
        "\n| latency | concurrency | customers | wall | requests | rows/s | peak RSS | bound = requests × latency / concurrency | wall / bound | speed-up vs concurrency 1 |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    let small_n = (s.n / 10).max(PAGE as usize * 20);
    for &ms in &s.latencies {
        let latency = Duration::from_millis(ms);
        let jitter = Duration::from_millis(s.jitter);
        let mean = latency + jitter / 2;
        let full = server(s.n, latency, jitter, s.gap).await;
        let small = if s.full {
            None
        } else {
            Some(server(small_n, latency, jitter, s.gap).await)
        };
        let mut base_rate = None;
        for conc in CONCURRENCY {
            let (oms, count, scale) = match &small {
                Some(small) if conc <= 2 => (small, small_n, s.n as f64 / small_n as f64),
                _ => (&full, s.n, 1.0),
            };
            oms.clear_requests();
            let run = child_backfill(oms, dir.path(), PAGE, conc).await;
            let requests = oms.request_count();
            let rows_per_s = count as f64 / run.wall;
            let bound = requests as f64 * mean.as_secs_f64() / f64::from(conc);
            let base = *base_rate.get_or_insert(rows_per_s);
            println!(
                "| {ms} ms | {conc} | {} | {}{} | {} | {} | {:.1} MiB | {} | {:.2} | {:.1}× |",
                rate(count as f64),
                secs(run.wall * scale),
                if scale > 1.0 { " *" } else { "" },
                rate(requests as f64 * scale),
                rate(rows_per_s),
                run.peak_rss_kib as f64 / 1024.0,
                secs(bound * scale),
                run.wall / bound,
                rows_per_s / base
            );
        }
        if let Some(small) = small {
            small.shutdown().await;
        }
        full.shutdown().await;
    }
}

/// Backfills at concurrency 8 against a throttled server (see the module docs).
async fn run_throttled(s: Settings) {
    const CONC: u32 = 8;
    let dir = tempfile::tempdir().expect("temp dir");
    let latency = Duration::from_millis(s.latencies.first().copied().unwrap_or(50));
    let jitter = Duration::from_millis(s.jitter);
    let pages = s.n.div_ceil(PAGE as usize);
    println!(
        "oms-sync throttled backfill benchmark: N = {} customers ({} pages of {PAGE}), concurrency {CONC}, latency {} ms, jitter {} ms, {} CPUs",
        rate(s.n as f64),
        rate(pages as f64),
        latency.as_millis(),
        s.jitter,
        std::thread::available_parallelism().map_or(0, |p| p.get()),
    );
    println!(
        "\n| throttle | Retry-After | rate change | wall | bound | wall / bound | served | 429 | 429 share |\n|---:|---|---|---:|---:|---:|---:|---:|---:|"
    );
    // Shared with the task that changes the rate mid-run.
    let oms = std::sync::Arc::new(server(s.n, latency, jitter, s.gap).await);
    for &per_second in &s.throttle {
        for change in [false, true] {
            for retry_after in [true, false] {
                oms.knobs(|k| {
                    k.throttle_per_second = Some(per_second);
                    k.throttle_retry_after = retry_after;
                });
                // A fresh server history: the last run's requests must not count in this one.
                tokio::time::sleep(Duration::from_millis(1100)).await;
                oms.clear_requests();
                let steady = pages as f64 / f64::from(per_second);
                let changer = change.then(|| {
                    let oms = oms.clone();
                    tokio::spawn(async move {
                        let third = Duration::from_secs_f64(steady / 3.0);
                        tokio::time::sleep(third).await;
                        oms.knobs(|k| k.throttle_per_second = Some((per_second / 2).max(1)));
                        tokio::time::sleep(third).await;
                        oms.knobs(|k| k.throttle_per_second = Some(per_second));
                    })
                });
                let run = child_backfill(&oms, dir.path(), PAGE, CONC).await;
                if let Some(h) = changer {
                    h.abort();
                }
                // A third at the rate, a third at half of it, the rest (half the pages) at it.
                let bound = if change { steady * 7.0 / 6.0 } else { steady };
                let (served, throttled) = (oms.served_count(), oms.throttled_count());
                println!(
                    "| {per_second}/s | {} | {} | {} | {} | {:.3} | {served} | {throttled} | {:.1}% |",
                    if retry_after { "yes" } else { "no" },
                    if change {
                        "halved at 1/3, back at 2/3"
                    } else {
                        "none"
                    },
                    secs(run.wall),
                    secs(bound),
                    run.wall / bound,
                    100.0 * throttled as f64 / (served + throttled) as f64,
                );
            }
        }
    }
    if let Ok(oms) = std::sync::Arc::try_unwrap(oms) {
        oms.shutdown().await;
    }
}
