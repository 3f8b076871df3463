//! Applying a batch in PostgreSQL: deletion marking of a backfill range, the records' upsert
//! (never older, never a rewrite of the same content) as ONE statement over arrays
//! (`INSERT … SELECT FROM unnest(…) ON CONFLICT … WHERE`), quarantine and the checkpoint, all
//! in one transaction. Same semantics as the SQLite backend's `apply`.

use std::collections::HashMap;

use postgres::types::ToSql;
use postgres::{Client, Transaction};

use super::copy;
use super::state::write_mark_if_greater;
use crate::resource::{BadRecord, Cell, Column, ColumnType, Keyed, Resource, Row};
use crate::timefmt;
use crate::warehouse::{Advance, Batch, RowStats};

/// The PostgreSQL type of a column as sent (arrays of these) and as stored.
fn types(ty: ColumnType) -> (&'static str, &'static str) {
    match ty {
        ColumnType::BigInt => ("bigint", "bigint"),
        ColumnType::Text => ("text", "text"),
        // Sent as canonical text, cast by the server: exact to the microsecond.
        ColumnType::Timestamp => ("text", "timestamptz"),
        ColumnType::Json => ("text", "jsonb"),
        ColumnType::Bool => ("boolean", "boolean"),
    }
}

/// The upsert of `unnest`ed arrays, one per column, then `$n+1` = now. Returns one row per
/// row written, `true` when inserted; rows not returned were unchanged (or older).
pub fn upsert_sql(table: &str, columns: &[Column]) -> String {
    let names: Vec<&str> = columns.iter().map(|c| c.name).collect();
    let arrays: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| format!("${}::{}[]", i + 1, types(c.ty).0))
        .collect();
    let select: Vec<String> = columns
        .iter()
        .map(|c| match types(c.ty) {
            (sent, stored) if sent != stored => format!("s.{}::{stored}", c.name),
            _ => format!("s.{}", c.name),
        })
        .collect();
    let sets: Vec<String> = names[1..]
        .iter()
        .map(|c| format!("{c} = excluded.{c}"))
        .collect();
    let differs: Vec<String> = names[1..]
        .iter()
        .filter(|c| **c != "modified_date")
        .map(|c| format!("excluded.{c} IS DISTINCT FROM t.{c}"))
        .collect();
    let now = columns.len() + 1;
    format!(
        "INSERT INTO {table} AS t ({cols}, deleted_at, synced_at, first_synced_at) \
         SELECT {select}, NULL, ${now}::text::timestamptz, ${now}::text::timestamptz \
         FROM unnest({arrays}) AS s({cols}) \
         ON CONFLICT (id) DO UPDATE SET {sets}, deleted_at = NULL, synced_at = excluded.synced_at \
         WHERE excluded.modified_date > t.modified_date \
            OR (excluded.modified_date = t.modified_date \
                AND (t.deleted_at IS NOT NULL OR {differs})) \
         RETURNING (xmax = 0)",
        cols = names.join(", "),
        select = select.join(", "),
        arrays = arrays.join(", "),
        sets = sets.join(", "),
        differs = differs.join(" OR "),
    )
}

/// Column arrays of `records`, in `T::COLUMNS` order.
fn column_arrays<'a, T: Row>(records: &[&'a T]) -> Vec<Box<dyn ToSql + Sync + 'a>> {
    (0..T::COLUMNS.len())
        .map(|i| -> Box<dyn ToSql + Sync + 'a> {
            match T::COLUMNS[i].ty {
                ColumnType::BigInt => Box::new(
                    records
                        .iter()
                        .map(|r| match r.cell(i) {
                            Cell::Int(v) => v,
                            _ => None,
                        })
                        .collect::<Vec<Option<i64>>>(),
                ),
                ColumnType::Bool => Box::new(
                    records
                        .iter()
                        .map(|r| match r.cell(i) {
                            Cell::Bool(v) => v,
                            _ => None,
                        })
                        .collect::<Vec<Option<bool>>>(),
                ),
                _ => Box::new(
                    records
                        .iter()
                        .map(|r| match r.cell(i) {
                            Cell::Text(v) => v,
                            _ => None,
                        })
                        .collect::<Vec<Option<&'a str>>>(),
                ),
            }
        })
        .collect()
}

/// Splits records into rounds so no id appears twice in one statement (ON CONFLICT cannot
/// touch a row twice); round k holds each id's k-th version, in page order, as SQLite applies
/// them one by one. Nearly always one round.
fn rounds<T: Keyed>(records: &[T]) -> Vec<Vec<&T>> {
    let mut seen: HashMap<i64, usize> = HashMap::with_capacity(records.len());
    let mut out: Vec<Vec<&T>> = vec![];
    for r in records {
        let k = seen.entry(r.id()).or_insert(0);
        if out.len() <= *k {
            out.push(Vec::with_capacity(if *k == 0 { records.len() } else { 0 }));
        }
        out[*k].push(r);
        *k += 1;
    }
    out
}

fn quarantine(
    tx: &mut Transaction<'_>,
    stream: &str,
    bad: &BadRecord,
    now: &str,
) -> Result<u64, postgres::Error> {
    match bad.id {
        Some(id) => tx.execute(
            "INSERT INTO quarantine (stream, record_id, modified_date, raw, error, first_seen_at, last_seen_at)
             VALUES ($1, $2, $3::text::timestamptz, $4, $5, $6::text::timestamptz, $6::text::timestamptz)
             ON CONFLICT (stream, record_id) WHERE record_id IS NOT NULL DO UPDATE SET
                 modified_date = excluded.modified_date, raw = excluded.raw, error = excluded.error,
                 last_seen_at = excluded.last_seen_at, times_seen = quarantine.times_seen + 1",
            &[&stream, &id, &bad.modified_date, &bad.raw, &bad.error, &now],
        ),
        None => tx.execute(
            "INSERT INTO quarantine (stream, record_id, modified_date, raw, error, first_seen_at, last_seen_at)
             VALUES ($1, NULL, $2::text::timestamptz, $3, $4, $5::text::timestamptz, $5::text::timestamptz)
             ON CONFLICT (stream, md5(raw)) WHERE record_id IS NULL DO UPDATE SET
                 last_seen_at = excluded.last_seen_at, times_seen = quarantine.times_seen + 1",
            &[&stream, &bad.modified_date, &bad.raw, &bad.error, &now],
        ),
    }
}

/// How a batch's records reach the table (measured: see docs/postgresql.md, "Bulk path").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BulkPath {
    /// One `INSERT … SELECT FROM unnest($1::bigint[], …) ON CONFLICT … WHERE`.
    #[default]
    Unnest,
    /// Binary COPY into an UNLOGGED staging table, then one `INSERT … SELECT … ON CONFLICT`.
    Copy,
}

/// Applies `batches`, in order, each with its checkpoint advance, in one transaction; adds
/// their figures to `run` (a page each). `quarantined` is the warehouse's count of
/// quarantined rows, kept current.
///
/// Each batch is applied as it would be in a transaction of its own (deletion marking sees the
/// rows of the batches before it; a record quarantined by one and stored by a later one leaves
/// the quarantine): one commit for several pages only saves the commit's fixed cost.
pub(super) fn apply_batches<R: Resource>(
    client: &mut Client,
    bulk: BulkPath,
    quarantined: &mut i64,
    run: i64,
    batches: &[Batch<R::Record>],
) -> Result<RowStats, postgres::Error> {
    let now = timefmt::now_canonical();
    let mut tx = client.transaction()?;
    let mut stats = RowStats::default();
    let mut count: Option<i64> = None;
    for batch in batches {
        let had_quarantine = count.unwrap_or(*quarantined) > 0;
        let (s, q) = apply_one::<R>(&mut tx, bulk, &now, batch, had_quarantine)?;
        stats.add(&s);
        count = q.or(count);
    }
    let pages = batches.len() as u64;
    let p: [&(dyn ToSql + Sync); 8] = [
        &run,
        &(pages as i64),
        &(stats.fetched as i64),
        &(stats.inserted as i64),
        &(stats.updated as i64),
        &(stats.unchanged as i64),
        &(stats.deleted as i64),
        &(stats.quarantined as i64),
    ];
    tx.execute(
        "UPDATE sync_runs SET pages = pages + $2, rows_fetched = rows_fetched + $3,
                 rows_inserted = rows_inserted + $4, rows_updated = rows_updated + $5,
                 rows_unchanged = rows_unchanged + $6, rows_deleted = rows_deleted + $7,
                 rows_quarantined = rows_quarantined + $8
             WHERE id = $1",
        &p,
    )?;
    tx.commit()?;
    if let Some(q) = count {
        *quarantined = q;
    }
    Ok(stats)
}

/// One batch of [`apply_batches`] inside its transaction: its figures, and the quarantine's
/// new size when it may have changed it.
fn apply_one<R: Resource>(
    tx: &mut postgres::Transaction<'_>,
    bulk: BulkPath,
    now: &str,
    batch: &Batch<R::Record>,
    had_quarantine: bool,
) -> Result<(RowStats, Option<i64>), postgres::Error> {
    let mut stats = RowStats {
        fetched: batch.rows() as u64,
        ..RowStats::default()
    };
    // The checkpoint first (same transaction): deletion marking then sees only the rows
    // stored before this batch.
    match &batch.advance {
        Advance::Mark(mark) => write_mark_if_greater(&mut *tx, R::NAME, mark)?,
        Advance::Backfill { range_no, from, to } => {
            // The range's own upper bound is only needed by its last page (a round trip).
            let hi: Option<i64> = match to {
                Some(_) => None,
                None => tx
                    .query_one(
                        "SELECT hi FROM backfill_ranges WHERE stream = $1 AND range_no = $2",
                        &[&R::NAME, range_no],
                    )?
                    .try_get(0)?,
            };
            let listed: Vec<i64> = batch
                .records
                .iter()
                .map(|r| r.id())
                .chain(batch.bad.iter().filter_map(|b| b.id))
                .collect();
            let upper = to.or(hi).unwrap_or(i64::MAX);
            stats.deleted = tx.execute(
                &format!(
                    "UPDATE {} SET deleted_at = $3::text::timestamptz, synced_at = $3::text::timestamptz
                     WHERE id > $1 AND id <= $2 AND deleted_at IS NULL AND id <> ALL($4::bigint[])",
                    R::TABLE
                ),
                &[from, &upper, &now, &listed],
            )?;
            match to {
                Some(t) => tx.execute(
                    "UPDATE backfill_ranges SET cursor_id = $3 WHERE stream = $1 AND range_no = $2",
                    &[&R::NAME, range_no, t],
                )?,
                None => tx.execute(
                    "UPDATE backfill_ranges SET done = true WHERE stream = $1 AND range_no = $2",
                    &[&R::NAME, range_no],
                )?,
            };
        }
    }
    if !batch.records.is_empty() {
        let columns = <R::Record as Row>::COLUMNS;
        let sql = upsert_sql(R::TABLE, columns);
        let merge = copy::merge_sql(R::TABLE, columns, &sql);
        if bulk == BulkPath::Copy {
            tx.batch_execute(&copy::create_staging_sql(R::TABLE, columns))?;
        }
        for round in rounds(&batch.records) {
            let written = match bulk {
                BulkPath::Unnest => {
                    let arrays = column_arrays(&round);
                    let mut params: Vec<&(dyn ToSql + Sync)> =
                        arrays.iter().map(|b| &**b).collect();
                    params.push(&now);
                    tx.query(&sql, &params)?
                }
                BulkPath::Copy => copy::copy_round(&mut *tx, R::TABLE, &merge, &round, now)?,
            };
            let inserted = written
                .iter()
                .map(|r| r.try_get::<_, bool>(0))
                .collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .filter(|i| *i)
                .count() as u64;
            stats.inserted += inserted;
            stats.updated += written.len() as u64 - inserted;
            stats.unchanged += (round.len() - written.len()) as u64;
        }
        if had_quarantine {
            let ids: Vec<i64> = batch.records.iter().map(|r| r.id()).collect();
            let mds: Vec<&str> = batch.records.iter().map(|r| r.modified_date()).collect();
            tx.execute(
                "DELETE FROM quarantine q USING unnest($2::bigint[], $3::text[]) AS r(id, md)
                 WHERE q.stream = $1 AND q.record_id = r.id
                   AND (q.modified_date IS NULL OR q.modified_date <= r.md::timestamptz)",
                &[&R::NAME, &ids, &mds],
            )?;
        }
    }
    for bad in &batch.bad {
        quarantine(&mut *tx, R::NAME, bad, now)?;
        stats.quarantined += 1;
    }
    let q = if had_quarantine || !batch.bad.is_empty() {
        Some(
            tx.query_one("SELECT count(*) FROM quarantine", &[])?
                .try_get(0)?,
        )
    } else {
        None
    };
    Ok((stats, q))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::{Customer, CustomerFields};

    #[test]
    fn duplicate_ids_go_to_later_rounds_in_order() {
        let c = |id: i64, md: &str| {
            Customer::new(CustomerFields {
                id,
                modified_date: md,
                ..CustomerFields::default()
            })
        };
        let recs = vec![c(1, "a"), c(2, "a"), c(1, "b"), c(3, "a"), c(1, "c")];
        let r: Vec<Vec<(i64, &str)>> = rounds(&recs)
            .iter()
            .map(|r| r.iter().map(|c| (c.id, c.modified_date())).collect())
            .collect();
        assert_eq!(
            r,
            vec![
                vec![(1, "a"), (2, "a"), (3, "a")],
                vec![(1, "b")],
                vec![(1, "c")]
            ]
        );
    }

    #[test]
    fn upsert_casts_instants_and_json() {
        let sql = upsert_sql("customers", Customer::COLUMNS);
        assert!(sql.contains("s.modified_date::timestamptz") && sql.contains("s.extra::jsonb"));
        assert!(sql.contains("$1::bigint[]") && sql.contains("$12::text::timestamptz"));
    }
}
