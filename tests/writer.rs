//! How the writer groups pages into transactions, against the fake OMS over loopback HTTP and a
//! real SQLite file: pages queued for it, of any backfill range, are committed together (each
//! with its own checkpoint advance), and the warehouse still ends equal to the server.

mod common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use oms_sync::resource::Customers;
use oms_sync::sync::{self, MAX_ROWS_PER_COMMIT, Progress, SyncOptions};
use oms_sync::warehouse::RowStats;

/// Watches the writer's transactions (one `committed` call each, on the writer's thread right
/// after the commit): how many, the most records one held, and how many moved the cursors of
/// more than one range.
struct Commits {
    db: PathBuf,
    count: AtomicU64,
    most_rows: AtomicU64,
    multi_range: AtomicU64,
    last: Mutex<Vec<(i64, i64, bool)>>,
}

impl Commits {
    fn new(db: PathBuf) -> Commits {
        Commits {
            db,
            count: AtomicU64::new(0),
            most_rows: AtomicU64::new(0),
            multi_range: AtomicU64::new(0),
            last: Mutex::new(Vec::new()),
        }
    }

    /// Each range's cursor and whether it is done, as committed.
    fn ranges(&self) -> Vec<(i64, i64, bool)> {
        let c = rusqlite::Connection::open(&self.db).unwrap();
        let mut q = c
            .prepare("SELECT range_no, cursor_id, done FROM backfill_ranges ORDER BY range_no")
            .unwrap();
        q.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }
}

impl Progress for Commits {
    fn committed(&self, _stream: &'static str, stats: &RowStats) {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.most_rows.fetch_max(stats.fetched, Ordering::Relaxed);
        let now = self.ranges();
        let mut last = self.last.lock().unwrap();
        let moved = now.iter().filter(|r| !last.contains(r)).count();
        if !last.is_empty() && moved > 1 {
            self.multi_range.fetch_add(1, Ordering::Relaxed);
        }
        *last = now;
    }
}

/// A backfill in 3 ranges whose writer is held up for a while (another connection holds the
/// write lock, as a second writer would) once the ranges are under way: their pages queue up
/// meanwhile, and the writer then commits queued pages of different ranges together.
#[tokio::test]
async fn queued_pages_of_different_ranges_share_a_transaction() {
    const PAGE: u32 = 10;
    let oms = fake(distinct(600)).await;
    let h = Harness::on(TestWarehouse::sqlite(), &oms, PAGE);
    let db = h.db();
    let held = Arc::new(AtomicBool::new(false));
    let locker: Arc<Mutex<Option<std::thread::JoinHandle<()>>>> = Arc::default();
    {
        let (held, locker) = (held.clone(), locker.clone());
        // At the 27th request, hold the write lock for 400 ms from another connection; the
        // writer waits for it (busy timeout). The plan takes the first 9 (the newest row, the
        // lowest and highest ids, 2 counts per range: even ids need no more), so by then every
        // range has fetched a page or more.
        oms.set_before_request(Box::new(move |seq, _| {
            if seq == 27 && !held.swap(true, Ordering::SeqCst) {
                let db = db.clone();
                let (tx, rx) = std::sync::mpsc::channel();
                let t = std::thread::spawn(move || {
                    let c = rusqlite::Connection::open(&db).unwrap();
                    c.execute_batch("BEGIN IMMEDIATE").unwrap();
                    tx.send(()).unwrap();
                    std::thread::sleep(Duration::from_millis(400));
                    c.execute_batch("COMMIT").unwrap();
                });
                rx.recv().unwrap();
                *locker.lock().unwrap() = Some(t);
            }
        }));
    }
    let commits = Arc::new(Commits::new(h.db()));
    let opts = SyncOptions {
        concurrency: 3,
        ..options(PAGE)
    };
    let (_wh, r) =
        sync::backfill_pass::<Customers, _>(&h.client, h.open(), &opts, &h.cancel, commits.clone())
            .await;
    if let Some(t) = locker.lock().unwrap().take() {
        t.join().unwrap();
    }
    let r = r.unwrap();
    assert!(held.load(Ordering::SeqCst), "the lock was taken mid-pass");
    let n = commits.count.load(Ordering::Relaxed);
    let multi = commits.multi_range.load(Ordering::Relaxed);
    let most = commits.most_rows.load(Ordering::Relaxed);
    // While the lock was held every range queued pages; once it was free the writer took them,
    // of several ranges at once, into one transaction.
    assert_eq!(r.stats.inserted, 600);
    assert!(
        multi >= 1 && n < r.pages,
        "{n} transactions for {} pages, {multi} of them moved several ranges",
        r.pages
    );
    // The queue holds rows, not a fixed number of pages: the ~50 pages fetched while the lock
    // was held all queue (a queue of CHANNEL_MIN_PAGES pages, and one page waiting per range,
    // would hold 7), and the writer takes them into one transaction.
    assert!(
        most >= 20 * u64::from(PAGE) && most < (MAX_ROWS_PER_COMMIT as u64) + u64::from(PAGE),
        "the largest transaction held {most} records"
    );
    assert_in_step(&oms, &h.rows(), false);
}
