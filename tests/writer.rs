//! How the writer groups pages into transactions, against the fake OMS over loopback HTTP and a
//! real SQLite file: pages that come while the writer waits (`COMMIT_LINGER`) are committed
//! together, and every row is still stored once with its checkpoint.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use oms_sync::resource::Customers;
use oms_sync::sync::{self, COMMIT_LINGER, MAX_PAGES_PER_COMMIT, Progress};
use oms_sync::warehouse::RowStats;

/// Counts the writer's transactions (one `committed` call each).
#[derive(Default)]
struct Commits(AtomicU64);

impl Progress for Commits {
    fn committed(&self, _stream: &'static str, _stats: &RowStats) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

const PAGES: u64 = 24;
const PAGE_SIZE: u32 = 10;

/// A server slower than the writer (each request waits a few milliseconds, well inside the
/// linger): the writer would otherwise find no page queued and commit each alone.
async fn slow_server() -> oms_sync::fake_oms::FakeOms {
    let oms = fake(distinct(PAGES as i64 * i64::from(PAGE_SIZE))).await;
    oms.knobs(|k| k.latency = Duration::from_millis(2));
    assert!(Duration::from_millis(2) * 4 < COMMIT_LINGER);
    oms
}

/// At most this many transactions for `PAGES` pages: every commit but the last holds several
/// pages (a commit per page would be `PAGES`).
fn few_commits() -> u64 {
    PAGES / 3
}

#[tokio::test]
async fn an_incremental_pass_commits_pages_that_come_in_the_linger_together() {
    let oms = slow_server().await;
    let h = Harness::on(TestWarehouse::sqlite(), &oms, PAGE_SIZE);
    let commits = Arc::new(Commits::default());
    let (_wh, r) = sync::incremental_pass::<Customers, _>(
        &h.client,
        h.open(),
        &h.opts,
        &h.cancel,
        commits.clone(),
    )
    .await;
    let r = r.unwrap();
    let n = commits.0.load(Ordering::Relaxed);
    assert_eq!(r.stats.inserted, PAGES * u64::from(PAGE_SIZE));
    assert!(r.pages >= PAGES, "{} pages", r.pages);
    assert!(
        n <= few_commits() && n * MAX_PAGES_PER_COMMIT as u64 >= r.pages,
        "{n} transactions for {} pages",
        r.pages
    );
    assert_eq!(h.rows().len() as u64, PAGES * u64::from(PAGE_SIZE));
}

#[tokio::test]
async fn a_backfill_range_commits_pages_that_come_in_the_linger_together() {
    let oms = slow_server().await;
    let h = Harness::on(TestWarehouse::sqlite(), &oms, PAGE_SIZE);
    let commits = Arc::new(Commits::default());
    let (_wh, r) = sync::backfill_pass::<Customers, _>(
        &h.client,
        h.open(),
        &h.opts,
        &h.cancel,
        commits.clone(),
    )
    .await;
    let r = r.unwrap();
    let n = commits.0.load(Ordering::Relaxed);
    assert_eq!(r.stats.inserted, PAGES * u64::from(PAGE_SIZE));
    assert!(n <= few_commits(), "{n} transactions for {} pages", r.pages);
    assert_eq!(h.rows().len() as u64, PAGES * u64::from(PAGE_SIZE));
}
