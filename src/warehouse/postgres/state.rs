//! Checkpoint state in PostgreSQL: the incremental mark (through [`Mark::from_columns`]),
//! an unfinished backfill's ranges, and the `timestamptz` <-> canonical text conversion.

use crate::resource::Spec;
use chrono::{DateTime, Utc};
use postgres::GenericClient;
use postgres::types::ToSql;

use crate::timefmt;
use crate::warehouse::history::secondary_indexes_of;
use crate::warehouse::{BackfillRange, BackfillState, Mark};

/// A stored instant as canonical text: exact to the microsecond (PostgreSQL's resolution).
pub(super) fn canon(t: Option<DateTime<Utc>>) -> Option<String> {
    t.as_ref().map(timefmt::canonical)
}

pub(super) fn read_mark<C: GenericClient>(
    c: &mut C,
    stream: &str,
) -> Result<Mark, postgres::Error> {
    Ok(c.query_opt(
        "SELECT mark_modified_date, mark_after_id FROM sync_state WHERE stream = $1",
        &[&stream],
    )?
    .map(|r| -> Result<Mark, postgres::Error> {
        Ok(Mark::from_columns(canon(r.try_get(0)?), r.try_get(1)?))
    })
    .transpose()?
    .unwrap_or(Mark::Start))
}

/// Moves the mark to `mark` if it is ahead of the stored one (never backward).
pub(super) fn write_mark_if_greater<C: GenericClient>(
    c: &mut C,
    stream: &str,
    mark: &Mark,
) -> Result<(), postgres::Error> {
    let current = read_mark(c, stream)?;
    if *mark <= current {
        return Ok(());
    }
    let (md, after) = mark.to_columns();
    c.execute(
        "INSERT INTO sync_state (stream, mark_modified_date, mark_after_id, updated_at)
         VALUES ($1, $2::text::timestamptz, $3, $4::text::timestamptz)
         ON CONFLICT (stream) DO UPDATE SET mark_modified_date = excluded.mark_modified_date,
             mark_after_id = excluded.mark_after_id, updated_at = excluded.updated_at",
        &[&stream, &md, &after, &timefmt::now_canonical()],
    )?;
    Ok(())
}

pub(super) fn read_backfill<C: GenericClient>(
    c: &mut C,
    stream: &str,
) -> Result<Option<BackfillState>, postgres::Error> {
    let Some(row) = c.query_opt(
        "SELECT run_id, started_at, high_water_date FROM backfill_state WHERE stream = $1",
        &[&stream],
    )?
    else {
        return Ok(None);
    };
    let ranges = c
        .query(
            "SELECT range_no, lo, hi, cursor_id, done FROM backfill_ranges WHERE stream = $1 ORDER BY range_no",
            &[&stream],
        )?
        .iter()
        .map(|r| {
            Ok(BackfillRange {
                range_no: r.try_get(0)?,
                lo: r.try_get(1)?,
                hi: r.try_get(2)?,
                cursor: r.try_get(3)?,
                done: r.try_get(4)?,
            })
        })
        .collect::<Result<Vec<_>, postgres::Error>>()?;
    let started: DateTime<Utc> = row.try_get(1)?;
    Ok(Some(BackfillState {
        run_id: row.try_get(0)?,
        started_at: timefmt::canonical(&started),
        high_water_date: canon(row.try_get(2)?),
        ranges,
    }))
}

/// Records a new backfill, replacing any ranges left of an earlier one.
pub(super) fn write_backfill<C: GenericClient>(
    c: &mut C,
    stream: &str,
    state: &BackfillState,
) -> Result<(), postgres::Error> {
    c.execute("DELETE FROM backfill_ranges WHERE stream = $1", &[&stream])?;
    c.execute(
        "INSERT INTO backfill_state (stream, run_id, started_at, high_water_date)
         VALUES ($1, $2, $3::text::timestamptz, $4::text::timestamptz)
         ON CONFLICT (stream) DO UPDATE SET run_id = excluded.run_id,
             started_at = excluded.started_at, high_water_date = excluded.high_water_date",
        &[
            &stream,
            &state.run_id,
            &state.started_at,
            &state.high_water_date,
        ],
    )?;
    for r in &state.ranges {
        let p: [&(dyn ToSql + Sync); 6] = [&stream, &r.range_no, &r.lo, &r.hi, &r.cursor, &r.done];
        c.execute(
            "INSERT INTO backfill_ranges (stream, range_no, lo, hi, cursor_id, done)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &p,
        )?;
    }
    Ok(())
}

pub(super) fn build_secondary_indexes<C: GenericClient>(
    c: &mut C,
    spec: &Spec,
) -> Result<(), postgres::Error> {
    for (table, index) in secondary_indexes_of(spec) {
        c.batch_execute(&index.create_sql(table))?;
    }
    Ok(())
}

pub(super) fn drop_secondary_indexes_if_empty<C: GenericClient>(
    c: &mut C,
    spec: &Spec,
) -> Result<(), postgres::Error> {
    let empty = c
        .query_opt(&format!("SELECT 1 FROM {} LIMIT 1", spec.table), &[])?
        .is_none();
    if empty {
        for (_, index) in secondary_indexes_of(spec) {
            c.batch_execute(&format!("DROP INDEX IF EXISTS {}", index.name))?;
        }
    }
    Ok(())
}
