//! Checkpoint state in SQLite: the incremental mark (through [`Mark::from_columns`]) and an
//! unfinished backfill's ranges.

use rusqlite::{Connection, OptionalExtension, params};

use crate::timefmt;
use crate::warehouse::{BackfillRange, BackfillState, Mark};

pub(super) fn read_mark(conn: &Connection, stream: &str) -> rusqlite::Result<Mark> {
    // Cached: an incremental pass reads and writes the mark once per page.
    conn.prepare_cached(
        "SELECT mark_modified_date, mark_after_id FROM sync_state WHERE stream = ?1",
    )?
    .query_row([stream], |r| Ok(Mark::from_columns(r.get(0)?, r.get(1)?)))
    .optional()
    .map(|m| m.unwrap_or(Mark::Start))
}

pub(super) fn write_mark_if_greater(
    conn: &Connection,
    stream: &str,
    mark: &Mark,
) -> rusqlite::Result<()> {
    let current = read_mark(conn, stream)?;
    if *mark <= current {
        return Ok(());
    }
    let (md, after) = mark.to_columns();
    conn.prepare_cached(
        "INSERT INTO sync_state (stream, mark_modified_date, mark_after_id, updated_at)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(stream) DO UPDATE SET mark_modified_date = excluded.mark_modified_date,
             mark_after_id = excluded.mark_after_id, updated_at = excluded.updated_at",
    )?
    .execute(params![stream, md, after, timefmt::now_canonical()])?;
    Ok(())
}

/// Reads the stream's backfill state, if a backfill is in progress.
pub(super) fn read_backfill(
    conn: &Connection,
    stream: &str,
) -> rusqlite::Result<Option<BackfillState>> {
    let Some((run_id, started_at, high_water_date)) = conn
        .query_row(
            "SELECT run_id, started_at, high_water_date FROM backfill_state WHERE stream = ?1",
            [stream],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?
    else {
        return Ok(None);
    };
    let mut stmt = conn.prepare(
        "SELECT range_no, lo, hi, cursor_id, done FROM backfill_ranges WHERE stream = ?1 ORDER BY range_no",
    )?;
    let ranges = stmt
        .query_map([stream], |r| {
            Ok(BackfillRange {
                range_no: r.get(0)?,
                lo: r.get(1)?,
                hi: r.get(2)?,
                cursor: r.get(3)?,
                done: r.get(4)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Some(BackfillState {
        run_id,
        started_at,
        high_water_date,
        ranges,
    }))
}
