//! Incremental passes: the `(modified_date, id)` keyset walk from the mark (less the
//! lookback), with tie groups drained by id. See the module above for the rules.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::writer::Msg;
use super::{Fetch, PassReport, Progress, SyncError, SyncOptions, no_progress, run_pass};
use crate::api::{ApiClient, ListQuery};
use crate::resource::Resource;
use crate::timefmt;
use crate::warehouse::{Advance, Batch, Confirmed, Mark, RunKind, Warehouse};

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
    W: Warehouse + 'static,
{
    run_pass::<R, W, _>(
        client,
        wh,
        opts,
        cancel,
        RunKind::Incremental,
        progress,
        async |f, init| {
            let cursor = with_lookback(init.mark, opts.lookback);
            walk_modified::<R>(f, cursor).await.map(|()| None)
        },
    )
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
    let Some(t) = timefmt::parse_api(modified_date) else {
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
    timefmt::parse_api(canonical)
        .map(|t| timefmt::filter_value(&t))
        .ok_or_else(|| SyncError::CorruptMark {
            value: canonical.to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

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
