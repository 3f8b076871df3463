//! The sync engine: one incremental pass ([`incremental_pass`]) or one backfill
//! ([`backfill_pass`]), shared by the daemon, `--once`, `--backfill`, the demo and the tests.
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

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::api::{ApiClient, ApiError, ListQuery, Page};
use crate::resource::Resource;
use crate::timefmt;
use crate::warehouse::{
    Advance, BackfillRange, BackfillState, Batch, Confirmed, Mark, RowStats, RunKind, RunStatus,
    Warehouse,
};

/// Pages buffered between the fetchers and the writer: bounds memory to a few pages.
pub const CHANNEL_PAGES: usize = 4;
/// At most this many queued pages are committed in one transaction.
pub const MAX_PAGES_PER_COMMIT: usize = 8;

#[derive(Debug, Clone)]
pub struct SyncOptions {
    pub page_size: u32,
    pub lookback: Duration,
    /// Parallel id ranges in a backfill.
    pub concurrency: u32,
}

impl SyncOptions {
    pub fn from_config(cfg: &crate::config::Config) -> Self {
        SyncOptions {
            page_size: cfg.api.page_size,
            lookback: cfg.sync.lookback,
            concurrency: cfg.api.concurrency,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Warehouse(Box<dyn std::error::Error + Send + Sync>),
    #[error(
        "the API returned a page that does not move past the checkpoint ({detail}); fix: report this to the OMS vendor; the checkpoint did not move"
    )]
    NoProgress { detail: String },
    #[error("the pass was stopped before it finished; its committed pages are kept")]
    Cancelled,
    #[error("the warehouse writer stopped unexpectedly: {0}")]
    Writer(String),
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
    fn committed(&self, _stats: &RowStats) {}
}

/// A progress sink that ignores everything.
pub struct NoProgress;
impl Progress for NoProgress {}

/// What a pass did.
#[derive(Debug, Clone)]
pub struct PassReport {
    pub kind: RunKind,
    pub run_id: i64,
    pub requests: u64,
    pub pages: u64,
    pub stats: RowStats,
    pub mark_before: Mark,
    pub mark_after: Mark,
    pub elapsed: Duration,
}

enum Msg<T> {
    Batch(Batch<T>),
    StartBackfill(BackfillState),
    FinishBackfill(Mark),
    Finish(RunStatus, Option<String>),
}

struct Init {
    run_id: i64,
    mark: Mark,
    backfill: Option<BackfillState>,
}

type WriterResult<W> = (W, Result<(RowStats, u64, Mark), String>);

/// Runs on a blocking thread: owns the warehouse for the pass.
fn writer<R, W>(
    mut wh: W,
    kind: RunKind,
    mut rx: mpsc::Receiver<Msg<R::Record>>,
    init: oneshot::Sender<Result<Init, String>>,
    progress: Arc<dyn Progress>,
) -> WriterResult<W>
where
    R: Resource,
    W: Warehouse<R>,
{
    let start = (|| -> Result<Init, W::Error> {
        let mark = wh.mark()?;
        let backfill = wh.backfill_state()?;
        let run_id = wh.begin_run(kind, &mark)?;
        Ok(Init {
            run_id,
            mark,
            backfill,
        })
    })();
    let run_id = match start {
        Ok(i) => {
            let id = i.run_id;
            let _ = init.send(Ok(i));
            id
        }
        Err(e) => {
            let msg = e.to_string();
            let _ = init.send(Err(msg.clone()));
            return (wh, Err(msg));
        }
    };
    let mut total = RowStats::default();
    let mut pages_total = 0u64;
    let mut pending: Option<Msg<R::Record>> = None;
    loop {
        let Some(msg) = pending.take().or_else(|| rx.blocking_recv()) else {
            // Every sender is gone without a Finish: the fetch side died; record it.
            let _ = wh.finish_run(run_id, RunStatus::Failed, Some("fetch task ended"));
            return (wh, Err("fetch task ended".into()));
        };
        let result = match msg {
            Msg::Batch(mut batch) => {
                let mut pages = 1u64;
                // Merge queued pages of the same kind of advance into one transaction.
                while (pages as usize) < MAX_PAGES_PER_COMMIT {
                    match rx.try_recv() {
                        Ok(Msg::Batch(next)) if mergeable(&batch.advance, &next.advance) => {
                            batch.advance = merged(&batch.advance, &next.advance);
                            batch.records.extend(next.records);
                            batch.bad.extend(next.bad);
                            pages += 1;
                        }
                        Ok(other) => {
                            pending = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                for bad in &batch.bad {
                    tracing::warn!(
                        id = ?bad.id,
                        modified_date = ?bad.modified_date,
                        error = %bad.error,
                        "record quarantined (kept whole in the quarantine table); the pass goes on"
                    );
                }
                wh.apply(run_id, batch, pages).map(|s| {
                    total.add(&s);
                    pages_total += pages;
                    progress.committed(&s);
                })
            }
            Msg::StartBackfill(state) => wh.start_backfill(&state),
            Msg::FinishBackfill(mark) => wh.finish_backfill(mark),
            Msg::Finish(status, error) => {
                let r = wh
                    .finish_run(run_id, status, error.as_deref())
                    .and_then(|_| wh.mark());
                return match r {
                    Ok(mark) => (wh, Ok((total, pages_total, mark))),
                    Err(e) => (wh, Err(e.to_string())),
                };
            }
        };
        if let Err(e) = result {
            let msg = e.to_string();
            let _ = wh.finish_run(run_id, RunStatus::Failed, Some(&msg));
            return (wh, Err(msg));
        }
    }
}

fn mergeable(a: &Advance, b: &Advance) -> bool {
    match (a, b) {
        (Advance::Mark(_), Advance::Mark(_)) => true,
        (
            Advance::Backfill {
                range_no: ra,
                to: Some(ta),
                ..
            },
            Advance::Backfill {
                range_no: rb, from, ..
            },
        ) => ra == rb && ta == from,
        _ => false,
    }
}

fn merged(a: &Advance, b: &Advance) -> Advance {
    match (a, b) {
        (Advance::Backfill { range_no, from, .. }, Advance::Backfill { to, .. }) => {
            Advance::Backfill {
                range_no: *range_no,
                from: *from,
                to: *to,
            }
        }
        _ => b.clone(),
    }
}

/// Shared state of the fetch side of a pass.
struct Fetch<'a, R: Resource> {
    client: &'a ApiClient,
    tx: mpsc::Sender<Msg<R::Record>>,
    cancel: &'a CancellationToken,
    requests: &'a AtomicU64,
    page_size: u32,
}

impl<R: Resource> Fetch<'_, R> {
    async fn get(&self, query: ListQuery) -> Result<Page<R::Record>, SyncError> {
        let query = query.with("limit", self.page_size.to_string());
        self.requests.fetch_add(1, Ordering::Relaxed);
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => Err(SyncError::Cancelled),
            r = self.client.list::<R>(&query) => Ok(r?),
        }
    }

    async fn send(&self, msg: Msg<R::Record>) -> Result<(), SyncError> {
        self.tx
            .send(msg)
            .await
            .map_err(|_| SyncError::Writer("the writer stopped".into()))
    }
}

/// Runs `fetch` against a writer thread that owns `wh`; returns the warehouse back.
async fn run_pass<R, W, F>(
    wh: W,
    kind: RunKind,
    progress: Arc<dyn Progress>,
    fetch: F,
) -> (W, Result<PassReport, SyncError>)
where
    R: Resource,
    W: Warehouse<R> + 'static,
    F: AsyncFnOnce(&mpsc::Sender<Msg<R::Record>>, Init) -> Result<u64, SyncError>,
{
    let started = Instant::now();
    let (tx, rx) = mpsc::channel(CHANNEL_PAGES);
    let (init_tx, init_rx) = oneshot::channel();
    let handle =
        tokio::task::spawn_blocking(move || writer::<R, W>(wh, kind, rx, init_tx, progress));
    let init = match init_rx.await {
        Ok(Ok(init)) => init,
        Ok(Err(_)) | Err(_) => return join_writer(handle).await.map_err_into_report(),
    };
    let run_id = init.run_id;
    let mark_before = init.mark.clone();
    let outcome = fetch(&tx, init).await;
    let (status, error) = match &outcome {
        Ok(_) => (RunStatus::Succeeded, None),
        Err(SyncError::Cancelled) => (RunStatus::Cancelled, None),
        Err(e) => (RunStatus::Failed, Some(e.to_string())),
    };
    let _ = tx.send(Msg::Finish(status, error)).await;
    drop(tx);
    let (wh, written) = join_writer(handle).await;
    let report = match (outcome, written) {
        (_, Err(e)) => Err(e),
        (Err(e), _) => Err(e),
        (Ok(requests), Ok((stats, pages, mark_after))) => Ok(PassReport {
            kind,
            run_id,
            requests,
            pages,
            stats,
            mark_before,
            mark_after,
            elapsed: started.elapsed(),
        }),
    };
    (wh, report)
}

async fn join_writer<W>(
    handle: tokio::task::JoinHandle<WriterResult<W>>,
) -> (W, Result<(RowStats, u64, Mark), SyncError>) {
    match handle.await {
        Ok((wh, r)) => (wh, r.map_err(|e| SyncError::Warehouse(e.into()))),
        // The writer owns the warehouse; a panic there is a bug, and the process must stop.
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

trait MapErrIntoReport<W> {
    fn map_err_into_report(self) -> (W, Result<PassReport, SyncError>);
}

impl<W> MapErrIntoReport<W> for (W, Result<(RowStats, u64, Mark), SyncError>) {
    fn map_err_into_report(self) -> (W, Result<PassReport, SyncError>) {
        let (wh, r) = self;
        let err = match r {
            Err(e) => e,
            Ok(_) => SyncError::Writer("the writer ended before the pass began".into()),
        };
        (wh, Err(err))
    }
}

fn no_progress(detail: impl Into<String>) -> SyncError {
    SyncError::NoProgress {
        detail: detail.into(),
    }
}

/// One incremental pass: everything modified after the mark (minus `lookback`).
pub async fn incremental_pass<R, W>(
    client: &ApiClient,
    wh: W,
    opts: &SyncOptions,
    cancel: &CancellationToken,
    progress: Arc<dyn Progress>,
) -> (W, Result<PassReport, SyncError>)
where
    R: Resource,
    W: Warehouse<R> + 'static,
{
    let requests = AtomicU64::new(0);
    run_pass::<R, W, _>(wh, RunKind::Incremental, progress, async |tx, init| {
        let f = Fetch::<R> {
            client,
            tx: tx.clone(),
            cancel,
            requests: &requests,
            page_size: opts.page_size,
        };
        let cursor = with_lookback(init.mark, opts.lookback);
        walk_modified::<R>(&f, cursor).await?;
        Ok(requests.load(Ordering::Relaxed))
    })
    .await
}

/// Starts `lookback` behind the mark: rows committed late with older dates are read again.
/// Nothing at the earlier instant is confirmed, so the walk reads it from its first row.
fn with_lookback(mark: Mark, lookback: Duration) -> Mark {
    let Mark::At { modified_date, .. } = &mark else {
        return mark;
    };
    if lookback.is_zero() {
        return mark;
    }
    let Some(t) = timefmt::parse_canonical(modified_date) else {
        return Mark::Start;
    };
    match chrono::Duration::from_std(lookback)
        .ok()
        .and_then(|d| t.checked_sub_signed(d))
    {
        Some(back) => Mark::at(timefmt::canonical(&back), Confirmed::Nothing),
        None => Mark::Start,
    }
}

/// Walks `(modified_date, id)` from `mark` to the end, sending each page with its mark.
async fn walk_modified<R: Resource>(f: &Fetch<'_, R>, mut mark: Mark) -> Result<(), SyncError> {
    // Ids above a confirmed one at the mark's instant come first: a bulk update may have
    // committed more rows at that instant since (stopped inside a tie group, or drained it).
    let mut drained: Option<String> = None;
    if let Mark::At {
        modified_date,
        confirmed: Confirmed::UpToId(_),
    } = &mark
    {
        let md = modified_date.clone();
        mark = drain_ties(f, mark).await?;
        drained = Some(md);
    }
    loop {
        let mut q = ListQuery::new().with("sort", "modified_date");
        // With rows at the mark's instant unconfirmed, ask from that instant inclusive: a page
        // that reaches past it holds the whole tie group (the server sorts by date), so ties
        // cost a few re-read rows rather than extra requests. An instant drained by id to an
        // empty page in this pass is behind us: ask for later ones.
        let unconfirmed = match &mark {
            Mark::Start => None,
            Mark::At { modified_date, .. } if drained.as_ref() == Some(modified_date) => {
                q = q.with("modified_date__gt", filter_date(modified_date)?);
                None
            }
            Mark::At { modified_date, .. } => {
                q = q.with("modified_date__gte", filter_date(modified_date)?);
                Some(modified_date.clone())
            }
        };
        let page = f.get(q).await?;
        if page.len == 0 {
            return Ok(());
        }
        let last = page
            .last_modified
            .clone()
            .ok_or_else(|| no_progress("no record in the page has a readable modified_date"))?;
        // The page held all that remained when the server counted. The rows at `last` stay
        // unconfirmed even so: `count` and `results` come from two queries, and a bulk update
        // committed between them could continue past the page at that very instant. The next
        // pass re-reads that instant (usually one row) and nothing is skipped.
        let complete = page.count <= page.len as u64;
        if unconfirmed.as_deref() == Some(last.as_str()) && !complete {
            // The whole page is one tie group larger than a page: store it, drain it by id.
            f.send(Msg::Batch(Batch {
                records: page.records,
                bad: page.bad,
                advance: Advance::Mark(mark.clone()),
            }))
            .await?;
            drained = Some(last);
            mark = drain_ties(f, mark).await?;
            continue;
        }
        let next = Mark::at(last, Confirmed::Nothing);
        if complete {
            // The mark never moves back, so a page of only the re-read instant changes nothing.
            f.send(Msg::Batch(Batch {
                records: page.records,
                bad: page.bad,
                advance: Advance::Mark(next),
            }))
            .await?;
            return Ok(());
        }
        if next <= mark {
            return Err(no_progress(format!(
                "rows dated up to {next} after asking for later than {mark}"
            )));
        }
        f.send(Msg::Batch(Batch {
            records: page.records,
            bad: page.bad,
            advance: Advance::Mark(next.clone()),
        }))
        .await?;
        mark = next;
    }
}

/// Reads the rows at the mark's instant with ids above the confirmed one, by id, until an empty
/// page (only an empty page ends the group: `count` may predate rows of a bulk update and the
/// server may cap the page). Each page moves the mark to the highest id it stored; the empty
/// page moves nothing, so the mark never claims an id it did not read.
async fn drain_ties<R: Resource>(f: &Fetch<'_, R>, mut mark: Mark) -> Result<Mark, SyncError> {
    let Mark::At {
        modified_date,
        confirmed,
    } = &mark
    else {
        return Ok(mark);
    };
    let modified_date = modified_date.clone();
    let mut after = match confirmed {
        Confirmed::Nothing => None,
        Confirmed::UpToId(id) => Some(*id),
    };
    loop {
        let mut q = ListQuery::new()
            .with("modified_date", filter_date(&modified_date)?)
            .with("sort", "id");
        if let Some(a) = after {
            q = q.with("id__gt", a.to_string());
        }
        let page = f.get(q).await?;
        if page.len == 0 {
            return Ok(mark);
        }
        let max = page
            .max_id
            .ok_or_else(|| no_progress("no record in the page has a readable id"))?;
        if after.is_some_and(|a| max <= a) {
            return Err(no_progress(format!(
                "ids up to {max} after asking for id > {after:?}"
            )));
        }
        mark = Mark::at(modified_date.as_str(), Confirmed::UpToId(max));
        f.send(Msg::Batch(Batch {
            records: page.records,
            bad: page.bad,
            advance: Advance::Mark(mark.clone()),
        }))
        .await?;
        after = Some(max);
    }
}

fn filter_date(canonical: &str) -> Result<String, SyncError> {
    timefmt::parse_canonical(canonical)
        .map(|t| timefmt::filter_value(&t))
        .ok_or_else(|| SyncError::Writer(format!("stored mark {canonical:?} is not a datetime")))
}

/// A full pass by id keyset: stores every customer the API lists, marks the ones it no longer
/// lists as deleted, and leaves the incremental mark at the newest `modified_date` the API had
/// before the backfill began. Resumes a backfill a previous process left unfinished.
pub async fn backfill_pass<R, W>(
    client: &ApiClient,
    wh: W,
    opts: &SyncOptions,
    cancel: &CancellationToken,
    progress: Arc<dyn Progress>,
) -> (W, Result<PassReport, SyncError>)
where
    R: Resource,
    W: Warehouse<R> + 'static,
{
    let requests = AtomicU64::new(0);
    let progress2 = progress.clone();
    run_pass::<R, W, _>(wh, RunKind::Backfill, progress, async |tx, init| {
        let f = Fetch::<R> {
            client,
            tx: tx.clone(),
            cancel,
            requests: &requests,
            page_size: opts.page_size,
        };
        let state = match init.backfill {
            Some(state) => {
                tracing::info!(started_at = %state.started_at, "resuming the unfinished backfill");
                state
            }
            None => {
                let state = plan_backfill(&f, init.run_id, opts.concurrency).await?;
                f.send(Msg::StartBackfill(state.clone())).await?;
                state
            }
        };
        let walks = state
            .ranges
            .iter()
            .filter(|r| !r.done)
            .map(|r| walk_ids(&f, r.clone(), progress2.as_ref()));
        let results = futures_join_all(walks).await;
        for r in results {
            r?;
        }
        let mark = match state.high_water_date {
            Some(md) => Mark::at(md, Confirmed::Nothing),
            None => Mark::Start,
        };
        f.send(Msg::FinishBackfill(mark)).await?;
        Ok(requests.load(Ordering::Relaxed))
    })
    .await
}

/// Runs futures concurrently on this task and collects their results in order.
async fn futures_join_all<F: std::future::Future>(futs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let futs: Vec<_> = futs.map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    let mut futs: Vec<Option<_>> = futs.into_iter().map(Some).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, slot) in futs.iter_mut().enumerate() {
            if let Some(fut) = slot {
                match fut.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        out[i] = Some(v);
                        *slot = None;
                    }
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

/// Takes the high-water date before anything is read, and splits ids into ranges.
async fn plan_backfill<R: Resource>(
    f: &Fetch<'_, R>,
    run_id: i64,
    concurrency: u32,
) -> Result<BackfillState, SyncError> {
    let started_at = timefmt::now_canonical();
    let newest = f
        .client
        .list::<R>(
            &ListQuery::new()
                .with("sort", "-modified_date")
                .with("limit", "1"),
        )
        .await?;
    f.requests.fetch_add(1, Ordering::Relaxed);
    let high_water_date = newest.last_modified.clone();
    let mut ranges = vec![BackfillRange {
        range_no: 0,
        lo: i64::MIN,
        hi: None,
        cursor: i64::MIN,
        done: false,
    }];
    if concurrency > 1 && newest.count > u64::from(f.page_size) {
        let first = f
            .client
            .list::<R>(&ListQuery::new().with("sort", "id").with("limit", "1"))
            .await?;
        let last = f
            .client
            .list::<R>(&ListQuery::new().with("sort", "-id").with("limit", "1"))
            .await?;
        f.requests.fetch_add(2, Ordering::Relaxed);
        if let (Some(min), Some(max)) = (first.max_id, last.max_id) {
            ranges = split_ids(min, max, concurrency);
        }
    }
    Ok(BackfillState {
        run_id: Some(run_id),
        started_at,
        high_water_date,
        ranges,
    })
}

/// Splits `[min, max]` into `n` ranges covering all of i64 (ids outside appear later too).
fn split_ids(min: i64, max: i64, n: u32) -> Vec<BackfillRange> {
    let n = i64::from(n.max(1));
    let span = (max.saturating_sub(min) / n).max(1);
    let mut ranges = Vec::new();
    let mut lo = i64::MIN;
    for k in 0..n {
        let hi = if k == n - 1 {
            None
        } else {
            Some(min.saturating_add(span.saturating_mul(k + 1)))
        };
        if let Some(h) = hi
            && h <= lo
        {
            continue;
        }
        ranges.push(BackfillRange {
            range_no: k,
            lo,
            hi,
            cursor: lo,
            done: false,
        });
        if let Some(h) = hi {
            lo = h;
        }
    }
    ranges
}

/// Walks one id range to its end by `id__gt` keyset.
async fn walk_ids<R: Resource>(
    f: &Fetch<'_, R>,
    range: BackfillRange,
    progress: &dyn Progress,
) -> Result<(), SyncError> {
    let mut cursor = range.cursor;
    let mut first = true;
    loop {
        let mut q = ListQuery::new().with("sort", "id");
        if cursor != i64::MIN {
            q = q.with("id__gt", cursor.to_string());
        }
        if let Some(hi) = range.hi {
            q = q.with("id__lte", hi.to_string());
        }
        let page = f.get(q).await?;
        if first {
            progress.add_total(page.count);
            first = false;
        }
        if page.len == 0 {
            f.send(Msg::Batch(Batch {
                records: Vec::new(),
                bad: Vec::new(),
                advance: Advance::Backfill {
                    range_no: range.range_no,
                    from: cursor,
                    to: None,
                },
            }))
            .await?;
            return Ok(());
        }
        let max = page
            .max_id
            .ok_or_else(|| no_progress("no record in the page has a readable id"))?;
        if max <= cursor || range.hi.is_some_and(|h| max > h) {
            return Err(no_progress(format!(
                "ids up to {max} after asking for id > {cursor} (range {:?})",
                range.hi
            )));
        }
        f.send(Msg::Batch(Batch {
            records: page.records,
            bad: page.bad,
            advance: Advance::Backfill {
                range_no: range.range_no,
                from: cursor,
                to: Some(max),
            },
        }))
        .await?;
        cursor = max;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_covers_all_ids_without_overlap() {
        let r = split_ids(1, 1000, 4);
        assert_eq!(r.len(), 4);
        assert_eq!(r[0].lo, i64::MIN);
        assert_eq!(r.last().unwrap().hi, None);
        for w in r.windows(2) {
            assert_eq!(w[0].hi, Some(w[1].lo));
        }
        let one = split_ids(5, 5, 3);
        assert_eq!(one[0].lo, i64::MIN);
        assert_eq!(one.last().unwrap().hi, None);
    }

    #[test]
    fn lookback_moves_the_start_back() {
        let m = Mark::at("2023-01-01T00:10:00.000000Z", Confirmed::UpToId(7));
        assert_eq!(
            with_lookback(m.clone(), Duration::from_secs(300)),
            Mark::at("2023-01-01T00:05:00.000000Z", Confirmed::Nothing)
        );
        assert_eq!(with_lookback(m.clone(), Duration::ZERO), m);
        assert_eq!(
            with_lookback(Mark::Start, Duration::from_secs(5)),
            Mark::Start
        );
    }
}
