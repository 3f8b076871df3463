//! Backfills: a full pass by id keyset over one or more id ranges walked in parallel, each with
//! its own resumable cursor; ids a range read past and the API no longer lists are marked deleted.
//!
//! A backfill may run in slices ([`backfill_slice`]): past its deadline each range stops before
//! its next request (after one page at least, so a slice always moves), the run is recorded as
//! cancelled with [`super::PAUSED_NOTE`], and the next slice resumes from the committed cursors.
//! Pages are applied whole, each with its cursor, so a range's deletions are marked exactly as
//! in one long pass; the high-water date is the one taken when the backfill was planned.

use std::sync::Arc;

use futures_util::future::try_join_all;
use futures_util::{StreamExt, TryStreamExt, stream};
use tokio_util::sync::CancellationToken;

use super::plan::RangePlanner;
use super::writer::Msg;
use super::{
    Fetch, PassReport, Progress, RangeProgress, SyncError, SyncOptions, no_progress, run_pass,
};
use crate::api::{ApiClient, ListQuery};
use crate::resource::Resource;
use crate::timefmt;
use crate::warehouse::{
    Advance, BackfillRange, BackfillState, Batch, Confirmed, Mark, RunKind, Warehouse,
};

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
    W: Warehouse + 'static,
{
    backfill_slice::<R, W>(client, wh, opts, cancel, progress, None).await
}

/// A backfill that stops once `until` has passed (None: runs to the end, as
/// [`backfill_pass`]); resumes the unfinished one or starts a new one. The report's
/// [`RangeProgress`] says whether it finished.
pub async fn backfill_slice<R, W>(
    client: &ApiClient,
    wh: W,
    opts: &SyncOptions,
    cancel: &CancellationToken,
    progress: Arc<dyn Progress>,
    until: Option<tokio::time::Instant>,
) -> (W, Result<PassReport, SyncError>)
where
    R: Resource,
    W: Warehouse + 'static,
{
    let progress2 = progress.clone();
    run_pass::<R, W, _>(
        client,
        wh,
        opts,
        cancel,
        RunKind::Backfill,
        progress,
        async |f, init| {
            let state = match init.backfill {
                Some(state) => {
                    tracing::info!(started_at = %state.started_at, "resuming the unfinished backfill");
                    state
                }
                None => {
                    let state = plan_backfill(f, init.run_id, opts.concurrency).await?;
                    f.send(Msg::StartBackfill(state.clone())).await?;
                    state
                }
            };
            // The first range to fail ends the pass at once and drops (cancels) the others;
            // what they committed stays, and their cursors resume the next backfill.
            let walked = try_join_all(
                state
                    .ranges
                    .iter()
                    .filter(|r| !r.done)
                    .map(|r| walk_ids(f, r.clone(), progress2.as_ref(), until)),
            )
            .await?;
            let ranges = state.ranges.len();
            let done_before = state.ranges.iter().filter(|r| r.done).count();
            let ranges_done = done_before + walked.iter().filter(|&&d| d).count();
            if ranges_done < ranges {
                return Ok(Some(RangeProgress {
                    ranges_done,
                    ranges,
                    finished: false,
                }));
            }
            let mark = match state.high_water_date {
                Some(md) => Mark::at(md, Confirmed::Nothing),
                None => Mark::Start,
            };
            f.send(Msg::FinishBackfill(mark)).await?;
            Ok(Some(RangeProgress {
                ranges_done,
                ranges,
                finished: true,
            }))
        },
    )
    .await
}

/// Takes the high-water date before anything is read, and splits ids into ranges.
async fn plan_backfill<R: Resource>(
    f: &Fetch<'_, R>,
    run_id: i64,
    concurrency: u32,
) -> Result<BackfillState, SyncError> {
    let started_at = timefmt::now_canonical();
    let newest = f
        .get_limited(ListQuery::new().with("sort", "-modified_date"), 1)
        .await?;
    let high_water_date = newest.last_modified.clone();
    let mut ranges = vec![BackfillRange {
        range_no: 0,
        lo: i64::MIN,
        hi: None,
        cursor: i64::MIN,
        done: false,
    }];
    let pages = newest.count.div_ceil(u64::from(f.page_size.max(1)));
    if concurrency > 1 && pages > 1 {
        let first = f
            .get_limited(ListQuery::new().with("sort", "id"), 1)
            .await?;
        let last = f
            .get_limited(ListQuery::new().with("sort", "-id"), 1)
            .await?;
        if let (Some(min), Some(max)) = (first.max_id, last.max_id) {
            let wanted = u32::try_from(pages).map_or(concurrency, |p| p.min(concurrency));
            ranges = balanced_ranges(f, min, max, wanted, pages, concurrency).await?;
        }
    }
    Ok(BackfillState {
        run_id: Some(run_id),
        started_at,
        high_water_date,
        ranges,
    })
}

/// Up to `wanted` ranges over the ids `min..=max` holding about as many rows each, from the
/// API's counts of the pieces [`RangePlanner`] asks about (`concurrency` requests at a time).
/// Ids outside `min..=max` that appear later are covered too: the first range starts at
/// `i64::MIN`, the last has no upper end.
async fn balanced_ranges<R: Resource>(
    f: &Fetch<'_, R>,
    min: i64,
    max: i64,
    wanted: u32,
    pages: u64,
    concurrency: u32,
) -> Result<Vec<BackfillRange>, SyncError> {
    let mut planner = RangePlanner::new(min, max, wanted, pages);
    let mut counted = 0usize;
    loop {
        let pieces = planner.wanted();
        counted += pieces.len();
        let counts: Vec<_> = stream::iter(pieces)
            .map(|(lo, hi)| async move {
                let mut q = ListQuery::new()
                    .with("sort", "-id")
                    .with("id__lte", hi.to_string());
                if lo != i64::MIN {
                    q = q.with("id__gt", lo.to_string());
                }
                let page = f.get_limited(q, 1).await?;
                Ok::<_, SyncError>((lo, hi, page.count, page.max_id))
            })
            .buffer_unordered(concurrency.max(1) as usize)
            .try_collect()
            .await?;
        for (lo, hi, count, highest) in counts {
            planner.counted(lo, hi, count, highest);
        }
        if !planner.refine() {
            break;
        }
    }
    let ranges = planner.ranges();
    // One line per backfill: how the work was split, and what splitting it cost.
    tracing::info!(
        ranges = ranges.len(),
        count_requests = counted,
        budget_ran_out = planner.exhausted(),
        "planned the backfill's id ranges from the API's counts"
    );
    Ok(ranges)
}

/// Walks one id range by `id__gt` keyset: to its end (true), or until `until` has passed
/// (false), checked before each request after the first.
async fn walk_ids<R: Resource>(
    f: &Fetch<'_, R>,
    range: BackfillRange,
    progress: &dyn Progress,
    until: Option<tokio::time::Instant>,
) -> Result<bool, SyncError> {
    let mut cursor = range.cursor;
    let mut first = true;
    loop {
        if !first && until.is_some_and(|t| tokio::time::Instant::now() >= t) {
            return Ok(false);
        }
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
            return Ok(true);
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
