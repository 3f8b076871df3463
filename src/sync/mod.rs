//! The sync engine: one incremental pass ([`incremental_pass`]) or one backfill
//! ([`backfill_pass`]), shared by the daemon, `--once`, `--backfill`, the demo and the tests.
//! The daemon runs its scheduled backfills in time slices ([`backfill_slice`]) between
//! incremental passes: each slice resumes from the cursors the last one committed.
//!
//! Fetching and writing overlap: async tasks fetch pages and send them over a bounded channel
//! to one blocking writer thread that owns the warehouse and commits each batch of records
//! together with its checkpoint. A pass killed at any instant resumes from the last commit.
//!
//! Incremental keyset on `(modified_date, id)` (see [`Mark`] for what a checkpoint claims):
//! - forward: `modified_date__gte=M&sort=modified_date`. All rows of a page older than its last
//!   row's date `L` are complete, rows at `L` may continue past the page, so the mark becomes
//!   `(L, none confirmed)` and the next request starts at `L` inclusive (re-reading the few rows
//!   at `L`, never skipping one);
//! - ties: when a whole page shares one date (a bulk update larger than a page), the group is
//!   drained by id with `modified_date=L&id__gt=X&sort=id` (the server's order among ties is
//!   arbitrary, ids are unique) until an empty page; the mark keeps `(L, highest id stored)`
//!   and paging goes on with `modified_date__gt=L`. The next pass asks again for ids above that
//!   one at `L` first: rows of the same bulk update that commit later are found.
//! - lookback: a pass starts `sync.lookback` before the mark (none confirmed there), so rows that
//!   commit late with a date the mark already passed are read; the mark never moves back.
//!
//! Page numbers and `next` links are never used: rows moving between pages while data changes
//! would be skipped, and a `next` link may point at another host. The page size the server
//! actually returns is never trusted: a tie group ends only on an empty page, and the forward
//! walk ends on an empty page or on a page that held the whole remaining `count` (its last
//! instant stays unconfirmed, so the next pass re-reads it).

mod backfill;
mod check;
mod incremental;
pub mod plan;
pub mod retention;
pub mod verify;
mod writer;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

pub use backfill::{backfill_pass, backfill_slice};
pub use incremental::incremental_pass;
pub use writer::MAX_ROWS_PER_COMMIT;

use crate::api::{ApiClient, ApiError, ListQuery, Page};
use crate::resource::Resource;
use crate::warehouse::{Batch, Mark, RowStats, RunKind, RunStatus, Warehouse, WarehouseError};
use writer::{Init, Msg, Written};

/// Rows buffered between the fetchers and the writer, whatever the page size: small pages
/// queue in greater numbers, so the writer can take more of them into one commit (a commit's
/// fixed cost was about a fifth of the writer's time at 100 rows a page).
pub const CHANNEL_ROWS: usize = 4000;
/// Pages buffered at least, so that fetching overlaps writing when pages are large.
pub const CHANNEL_MIN_PAGES: usize = 4;

/// The channel's capacity in pages for `page_size`: [`CHANNEL_ROWS`] rows, at least
/// [`CHANNEL_MIN_PAGES`] pages. Memory stays bounded by the rows, not by the page count.
fn channel_pages(page_size: u32) -> usize {
    CHANNEL_ROWS
        .div_ceil(page_size.max(1) as usize)
        .max(CHANNEL_MIN_PAGES)
}

#[derive(Debug, Clone)]
pub struct SyncOptions {
    pub page_size: u32,
    pub lookback: Duration,
    /// Parallel id ranges in a backfill.
    pub concurrency: u32,
    /// History mode (`sync.history`): each pass turns it on or off first, then keeps it.
    pub history: bool,
}

impl SyncOptions {
    pub fn from_config(cfg: &crate::config::Config) -> Self {
        SyncOptions {
            page_size: cfg.api.page_size,
            lookback: cfg.sync.lookback,
            concurrency: cfg.api.concurrency,
            history: cfg.sync.history,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Warehouse(#[from] WarehouseError),
    #[error(
        "the stored checkpoint {value:?} is not a datetime; fix: run oms-sync --backfill, which rewrites it"
    )]
    CorruptMark { value: String },
    #[error(
        "the API returned a page that does not move past the checkpoint ({detail}); fix: report this to the OMS vendor; the checkpoint did not move"
    )]
    NoProgress { detail: String },
    #[error(
        "stream {stream}: the API answered GET {request} with {detail}; the endpoint ignores a filter or sort it was sent (django-filter drops what it does not declare); nothing of that page was stored and the checkpoint did not move; fix: run oms-sync check to see what the endpoint honours, and report it to the OMS vendor"
    )]
    PageMismatch {
        stream: &'static str,
        /// Path and query (the token is a header, never part of it).
        request: String,
        detail: String,
    },
    #[error("the pass was stopped before it finished; its committed pages are kept")]
    Cancelled,
    #[error("the warehouse writer stopped before the pass finished")]
    WriterStopped,
    #[error("the fetch side of the pass stopped without finishing it")]
    FetchEnded,
}

impl SyncError {
    pub fn is_auth(&self) -> bool {
        matches!(self, SyncError::Api(ApiError::Auth { .. }))
    }
}

/// Watches a pass as it goes (progress bars, logs, metrics).
pub trait Progress: Send + Sync {
    /// The API's estimate of rows to fetch grew by `rows`.
    fn add_total(&self, _rows: u64) {}
    /// A batch was committed.
    fn committed(&self, _stream: &'static str, _stats: &RowStats) {}
}

/// A progress sink that ignores everything.
pub struct NoProgress;
impl Progress for NoProgress {}

/// What a pass did.
#[derive(Debug, Clone)]
pub struct PassReport {
    /// The stream's name (see [`crate::stream::Stream`]).
    pub stream: &'static str,
    pub kind: RunKind,
    pub run_id: i64,
    pub requests: u64,
    pub pages: u64,
    pub stats: RowStats,
    pub mark_before: Mark,
    pub mark_after: Mark,
    pub elapsed: Duration,
    /// A backfill's ranges after the pass (None for an incremental pass).
    pub backfill: Option<RangeProgress>,
}

/// How far a backfill has got: its id ranges walked to their end, of all its ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RangeProgress {
    pub ranges_done: usize,
    pub ranges: usize,
    /// False: the slice stopped at its time budget with ranges left; the next slice resumes.
    pub finished: bool,
}

/// What `run_pass` records for a slice of a backfill that stopped at its time budget.
pub const PAUSED_NOTE: &str =
    "paused at the end of its time slice; the next slice resumes it where it stopped";

/// Shared state of the fetch side of a pass.
struct Fetch<'a, R: Resource> {
    client: &'a ApiClient,
    tx: mpsc::Sender<Msg<R::Record>>,
    /// Batches the writer has applied, freed here: the records were allocated on this side,
    /// and glibc's malloc frees memory of another thread's arena slowly (on the writer's
    /// thread, a sixth of its time in a 1M-customer backfill went to `free`).
    spent: std::sync::Mutex<std::sync::mpsc::Receiver<Batch<R::Record>>>,
    cancel: &'a CancellationToken,
    requests: AtomicU64,
    page_size: u32,
}

impl<R: Resource> Fetch<'_, R> {
    /// One page of `page_size` rows: counted, and given up at once when the pass is cancelled.
    async fn get(&self, query: ListQuery) -> Result<Page<R::Record>, SyncError> {
        self.get_limited(query, self.page_size).await
    }

    async fn get_limited(
        &self,
        query: ListQuery,
        limit: u32,
    ) -> Result<Page<R::Record>, SyncError> {
        let query = query.with("limit", limit.to_string());
        self.requests.fetch_add(1, Ordering::Relaxed);
        let page = tokio::select! {
            biased;
            _ = self.cancel.cancelled() => return Err(SyncError::Cancelled),
            r = self.client.list::<R>(&query) => r?,
        };
        // Every page of every path passes here before anything of it is sent to the writer.
        match check::Asked::of(&query).violation(&page) {
            None => Ok(page),
            Some(detail) => Err(SyncError::PageMismatch {
                stream: R::NAME,
                request: crate::api::path_and_query(R::PATH, &query),
                detail,
            }),
        }
    }

    async fn send(&self, msg: Msg<R::Record>) -> Result<(), SyncError> {
        // Never waits: another range draining it now frees these as well.
        if let Ok(spent) = self.spent.try_lock() {
            while spent.try_recv().is_ok() {}
        }
        self.tx
            .send(msg)
            .await
            .map_err(|_| SyncError::WriterStopped)
    }
}

/// Runs `fetch` against a writer thread that owns `wh`; returns the warehouse back.
async fn run_pass<R, W, F>(
    client: &ApiClient,
    wh: W,
    opts: &SyncOptions,
    cancel: &CancellationToken,
    kind: RunKind,
    progress: Arc<dyn Progress>,
    fetch: F,
) -> (W, Result<PassReport, SyncError>)
where
    R: Resource,
    W: Warehouse + 'static,
    F: AsyncFnOnce(&Fetch<'_, R>, Init) -> Result<Option<RangeProgress>, SyncError>,
{
    let started = Instant::now();
    let (tx, rx) = mpsc::channel(channel_pages(opts.page_size));
    // Unbounded, but it holds no more than the pages the writer applied since the fetch side
    // last sent one: about a transaction's worth (`MAX_ROWS_PER_COMMIT` records at most).
    let (spent_tx, spent_rx) = std::sync::mpsc::channel();
    let (init_tx, init_rx) = oneshot::channel();
    let history = opts.history;
    let handle = tokio::task::spawn_blocking(move || {
        writer::writer::<R, W>(wh, kind, history, rx, spent_tx, init_tx, progress)
    });
    let Ok(Some(init)) = init_rx.await else {
        // The writer could not start the run; its error says why.
        let (wh, r) = writer::join_writer(handle).await;
        return (wh, Err(r.err().unwrap_or(SyncError::WriterStopped)));
    };
    let run_id = init.run_id;
    let mark_before = init.mark.clone();
    let f = Fetch::<R> {
        client,
        tx,
        spent: std::sync::Mutex::new(spent_rx),
        cancel,
        requests: AtomicU64::new(0),
        page_size: opts.page_size,
    };
    let outcome = fetch(&f, init).await;
    let (status, error) = match &outcome {
        // A paused slice did not finish: it must not read as a finished backfill in sync_runs.
        Ok(Some(p)) if !p.finished => (RunStatus::Cancelled, Some(PAUSED_NOTE.to_string())),
        Ok(_) => (RunStatus::Succeeded, None),
        Err(SyncError::Cancelled) => (RunStatus::Cancelled, None),
        Err(e) => (RunStatus::Failed, Some(e.to_string())),
    };
    let requests = f.requests.load(Ordering::Relaxed);
    let _ = f.tx.send(Msg::Finish(status, error)).await;
    drop(f);
    let (wh, written) = writer::join_writer(handle).await;
    let report = match (outcome, written) {
        (_, Err(e)) => Err(e),
        (Err(e), _) => Err(e),
        (Ok(backfill), Ok(Written { stats, pages, mark })) => Ok(PassReport {
            stream: R::NAME,
            kind,
            run_id,
            requests,
            pages,
            stats,
            mark_before,
            mark_after: mark,
            elapsed: started.elapsed(),
            backfill,
        }),
    };
    (wh, report)
}

fn no_progress(detail: impl Into<String>) -> SyncError {
    SyncError::NoProgress {
        detail: detail.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The queue holds about `CHANNEL_ROWS` records whatever the page size, and never fewer
    /// than `CHANNEL_MIN_PAGES` pages.
    #[test]
    fn the_queue_is_sized_in_records() {
        assert_eq!(channel_pages(100), 40);
        assert_eq!(channel_pages(1000), CHANNEL_MIN_PAGES);
        assert_eq!(channel_pages(5000), CHANNEL_MIN_PAGES);
        assert_eq!(channel_pages(3), 1334);
        assert_eq!(channel_pages(0), CHANNEL_ROWS);
    }
}
