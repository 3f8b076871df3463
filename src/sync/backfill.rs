//! Backfills: a full pass by id keyset over one or more id ranges walked in parallel, each with
//! its own resumable cursor; ids a range read past and the API no longer lists are marked deleted.

use std::sync::Arc;

use futures_util::future::try_join_all;
use tokio_util::sync::CancellationToken;

use super::writer::Msg;
use super::{Fetch, PassReport, Progress, SyncError, SyncOptions, no_progress, run_pass};
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
    W: Warehouse<R> + 'static,
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
            try_join_all(
                state
                    .ranges
                    .iter()
                    .filter(|r| !r.done)
                    .map(|r| walk_ids(f, r.clone(), progress2.as_ref())),
            )
            .await?;
            let mark = match state.high_water_date {
                Some(md) => Mark::at(md, Confirmed::Nothing),
                None => Mark::Start,
            };
            f.send(Msg::FinishBackfill(mark)).await
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
    if concurrency > 1 && newest.count > u64::from(f.page_size) {
        let first = f
            .get_limited(ListQuery::new().with("sort", "id"), 1)
            .await?;
        let last = f
            .get_limited(ListQuery::new().with("sort", "-id"), 1)
            .await?;
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
pub fn split_ids(min: i64, max: i64, n: u32) -> Vec<BackfillRange> {
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
}
