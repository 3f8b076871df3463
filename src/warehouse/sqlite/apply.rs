//! Applying a batch: the records' upserts (never older, never a rewrite of the same content),
//! quarantine, deletion marking of a backfill range and the checkpoint, in one transaction.

use std::collections::HashSet;
use std::path::Path;

use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use rusqlite::{Connection, Statement, TransactionBehavior, params};

use super::connection::classify;
use super::state::write_mark_if_greater;
use crate::resource::{BadRecord, Cell, Index, Keyed, Resource, Row, Spec};
use crate::timefmt;
use crate::warehouse::{Advance, Batch, RowStats, WarehouseError};

/// A cell as a SQLite value (instants and JSON are text in SQLite).
impl rusqlite::ToSql for Cell<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match *self {
            Cell::Int(Some(v)) => ToSqlOutput::Owned(Value::Integer(v)),
            Cell::Text(Some(s)) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Cell::Bool(Some(b)) => ToSqlOutput::Owned(Value::Integer(b.into())),
            Cell::Int(None) | Cell::Text(None) | Cell::Bool(None) => {
                ToSqlOutput::Owned(Value::Null)
            }
        })
    }
}

/// Binds a row to parameters 1..=COLUMNS.len() of the upsert.
fn bind<T: Row>(row: &T, stmt: &mut Statement<'_>) -> rusqlite::Result<()> {
    for i in 0..T::COLUMNS.len() {
        stmt.raw_bind_parameter(i + 1, row.cell(i))?;
    }
    Ok(())
}

/// The statements that store one record: never replace a row with an older version, and do
/// not rewrite a row whose content is the same (a lookback re-read costs a lookup, not a
/// write). Public so the benchmark's raw loop runs the very same SQL. Both take the columns in
/// order as `?1..?n`, then the sync time.
///
/// - No `RETURNING`: it makes SQLite collect each row's result in a temporary B-tree, which
///   cost a third of a bulk load's time; what happened is read from the connection instead
///   (see [`classify_upsert`]).
/// - Setting an indexed column, even to the value it has, makes SQLite rewrite its index
///   entry: one more random index page dirtied per changed row (written twice, to the WAL and
///   at the checkpoint). So `upsert` leaves the indexed columns other than `modified_date`
///   (which every real change moves) alone and applies only while they are unchanged; when
///   it changes nothing, `update` sets every column under the same conditions.
#[derive(Debug, Clone)]
pub struct UpsertSql {
    /// `INSERT … ON CONFLICT(id) DO UPDATE` of the columns not in `kept`.
    pub upsert: String,
    /// `UPDATE` of every column; run only when `upsert` changed nothing.
    pub update: String,
}

impl UpsertSql {
    pub fn new(spec: &Spec) -> UpsertSql {
        let table = spec.table;
        let columns: Vec<&str> = spec.columns.iter().map(|c| c.name).collect();
        let kept: Vec<&str> = indexed_columns(spec.indexes)
            .into_iter()
            .filter(|c| *c != "modified_date" && columns[1..].contains(c))
            .collect();
        let n = columns.len();
        let now = n + 1;
        let param = |c: &str| columns.iter().position(|x| *x == c).map_or(0, |i| i + 1);
        // The write condition, with `new(c)` the incoming value of column c.
        let cond = |new: &dyn Fn(&str) -> String| {
            let differs: Vec<String> = columns[1..]
                .iter()
                .filter(|c| **c != "modified_date")
                .map(|c| format!("{} IS NOT {table}.{c}", new(c)))
                .collect();
            format!(
                "({md} > {table}.modified_date \
                  OR ({md} = {table}.modified_date \
                      AND ({table}.deleted_at IS NOT NULL OR {})))",
                differs.join(" OR "),
                md = new("modified_date"),
            )
        };
        let excluded = |c: &str| format!("excluded.{c}");
        let bound = |c: &str| format!("?{}", param(c));
        let sets: Vec<String> = columns[1..]
            .iter()
            .filter(|c| !kept.contains(c))
            .map(|c| format!("{c} = excluded.{c}"))
            .collect();
        let same: String = kept
            .iter()
            .map(|c| format!(" AND excluded.{c} IS {table}.{c}"))
            .collect();
        let upsert = format!(
            "INSERT INTO {table} ({}, deleted_at, synced_at, first_synced_at) \
             VALUES ({}, NULL, ?{now}, ?{now}) \
             ON CONFLICT(id) DO UPDATE SET {}, deleted_at = NULL, synced_at = excluded.synced_at \
             WHERE {}{same}",
            columns.join(", "),
            (1..=n)
                .map(|i| format!("?{i}"))
                .collect::<Vec<_>>()
                .join(", "),
            sets.join(", "),
            cond(&excluded),
        );
        let all_sets: Vec<String> = columns[1..]
            .iter()
            .map(|c| format!("{c} = ?{}", param(c)))
            .collect();
        let update = format!(
            "UPDATE {table} SET {}, deleted_at = NULL, synced_at = ?{now} WHERE id = ?1 AND {}",
            all_sets.join(", "),
            cond(&bound),
        );
        UpsertSql { upsert, update }
    }
}

/// The columns of the secondary indexes in `indexes`.
fn indexed_columns(indexes: &[Index]) -> Vec<&'static str> {
    indexes
        .iter()
        .flat_map(|i| i.columns.iter().copied())
        .collect()
}

#[derive(Debug, PartialEq, Eq)]
enum Upserted {
    Inserted,
    Updated,
    Unchanged,
}

/// What the upsert of row `id` did, from its change count and the connection's last inserted
/// rowid before and after (the record tables' `id` is the rowid). The `DO UPDATE` path and the
/// no-op leave the last inserted rowid alone; only a new row sets it to `id`. None when that
/// cannot tell: the last inserted rowid (of any table) already was `id`.
fn classify_upsert(id: i64, changed: usize, before: i64, after: i64) -> Option<Upserted> {
    match changed {
        0 => Some(Upserted::Unchanged),
        _ if before == id => None,
        _ if after == id => Some(Upserted::Inserted),
        _ => Some(Upserted::Updated),
    }
}

fn quarantine(tx: &Connection, stream: &str, bad: &BadRecord, now: &str) -> rusqlite::Result<()> {
    match bad.id {
        Some(id) => tx.execute(
            "INSERT INTO quarantine (stream, record_id, modified_date, raw, error, first_seen_at, last_seen_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)
             ON CONFLICT(stream, record_id) WHERE record_id IS NOT NULL DO UPDATE SET
                 modified_date = excluded.modified_date, raw = excluded.raw, error = excluded.error,
                 last_seen_at = excluded.last_seen_at, times_seen = times_seen + 1",
            params![stream, id, bad.modified_date, bad.raw, bad.error, now],
        )?,
        None => tx.execute(
            "INSERT INTO quarantine (stream, record_id, modified_date, raw, error, first_seen_at, last_seen_at)
             VALUES (?1, NULL, ?2, ?3, ?4, ?5, ?5)
             ON CONFLICT(stream, raw) WHERE record_id IS NULL DO UPDATE SET
                 last_seen_at = excluded.last_seen_at, times_seen = times_seen + 1",
            params![stream, bad.modified_date, bad.raw, bad.error, now],
        )?,
    };
    Ok(())
}

/// Marks rows with id in `(from, to]` (`to` None: unbounded) that the API did not list.
///
/// Runs before the batch's rows are written, so in a first load the range is empty and this
/// costs one index probe; the ids the batch lists are only collected when there are rows.
fn mark_deleted(
    tx: &Connection,
    table: &str,
    from: i64,
    to: Option<i64>,
    listed: impl Iterator<Item = i64>,
    now: &str,
) -> rusqlite::Result<u64> {
    let to = to.unwrap_or(i64::MAX);
    let present: Vec<i64> = {
        let mut stmt = tx.prepare_cached(&format!(
            "SELECT id FROM {table} WHERE id > ?1 AND id <= ?2 AND deleted_at IS NULL"
        ))?;
        stmt.query_map(params![from, to], |r| r.get::<_, i64>(0))?
            .collect::<rusqlite::Result<_>>()?
    };
    if present.is_empty() {
        return Ok(0);
    }
    let listed: HashSet<i64> = listed.collect();
    let gone: Vec<i64> = present
        .into_iter()
        .filter(|id| !listed.contains(id))
        .collect();
    let mut upd = tx.prepare_cached(&format!(
        "UPDATE {table} SET deleted_at = ?2, synced_at = ?2 WHERE id = ?1"
    ))?;
    for id in &gone {
        upd.execute(params![id, now])?;
    }
    Ok(gone.len() as u64)
}

/// Applies `batches`, in order, each with its checkpoint advance, in one transaction; adds
/// their figures to `run` (a page each). `quarantined` is the warehouse's count of
/// quarantined rows, kept current.
///
/// Each batch is applied as it would be in a transaction of its own (deletion marking sees the
/// rows of the batches before it; a record quarantined by one and stored by a later one leaves
/// the quarantine): one commit for several pages only saves the commit's fixed cost.
pub(super) fn apply_batches<R>(
    conn: &mut Connection,
    path: &Path,
    quarantined: &mut i64,
    run: i64,
    sql: &UpsertSql,
    batches: &[Batch<R::Record>],
) -> Result<RowStats, WarehouseError>
where
    R: Resource,
{
    let now = timefmt::now_canonical();
    let before = *quarantined;
    // The quarantine's new size, when a batch may have changed it.
    let run_tx = |conn: &mut Connection| -> rusqlite::Result<(RowStats, Option<i64>)> {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut total = RowStats::default();
        let mut count: Option<i64> = None;
        for batch in batches {
            let had_quarantine = count.unwrap_or(before) > 0;
            let (stats, q) = apply_one::<R>(&tx, sql, &now, batch, had_quarantine)?;
            total.add(&stats);
            count = q.or(count);
        }
        let stats = total;
        let pages = batches.len() as u64;
        tx.prepare_cached(
            "UPDATE sync_runs SET pages = pages + ?2, rows_fetched = rows_fetched + ?3,
                     rows_inserted = rows_inserted + ?4, rows_updated = rows_updated + ?5,
                     rows_unchanged = rows_unchanged + ?6, rows_deleted = rows_deleted + ?7,
                     rows_quarantined = rows_quarantined + ?8
                 WHERE id = ?1",
        )?
        .execute(params![
            run,
            pages as i64,
            stats.fetched as i64,
            stats.inserted as i64,
            stats.updated as i64,
            stats.unchanged as i64,
            stats.deleted as i64,
            stats.quarantined as i64
        ])?;
        tx.commit()?;
        Ok((stats, count))
    };
    let (stats, q) = run_tx(conn).map_err(|e| classify(path, "writing a page", e))?;
    if let Some(q) = q {
        *quarantined = q;
    }
    Ok(stats)
}

/// One batch of [`apply_batches`] inside its transaction: its figures, and the quarantine's
/// new size when it may have changed it.
fn apply_one<R: Resource>(
    tx: &rusqlite::Transaction<'_>,
    sql: &UpsertSql,
    now: &str,
    batch: &Batch<R::Record>,
    had_quarantine: bool,
) -> rusqlite::Result<(RowStats, Option<i64>)> {
    let now_param = <R::Record as Row>::COLUMNS.len() + 1;
    let mut stats = RowStats {
        fetched: batch.rows() as u64,
        ..RowStats::default()
    };
    let mut quarantine_delta = 0i64;
    // The checkpoint first (same transaction): deletion marking then sees only the
    // rows stored before this batch.
    match &batch.advance {
        Advance::Mark(mark) => write_mark_if_greater(tx, R::NAME, mark)?,
        Advance::Backfill { range_no, from, to } => {
            // The range's own upper bound is only needed by its last page.
            let upper = match to {
                Some(t) => Some(*t),
                None => tx
                    .prepare_cached(
                        "SELECT hi FROM backfill_ranges WHERE stream = ?1 AND range_no = ?2",
                    )?
                    .query_row(params![R::NAME, range_no], |r| r.get(0))?,
            };
            let listed = batch
                .records
                .iter()
                .map(|r| r.id())
                .chain(batch.bad.iter().filter_map(|b| b.id));
            stats.deleted = mark_deleted(tx, R::TABLE, *from, upper, listed, now)?;
            match to {
                Some(t) => tx
                    .prepare_cached(
                        "UPDATE backfill_ranges SET cursor_id = ?3 WHERE stream = ?1 AND range_no = ?2",
                    )?
                    .execute(params![R::NAME, range_no, t])?,
                None => tx
                    .prepare_cached(
                        "UPDATE backfill_ranges SET done = 1 WHERE stream = ?1 AND range_no = ?2",
                    )?
                    .execute(params![R::NAME, range_no])?,
            };
        }
    }
    {
        let mut upsert = tx.prepare_cached(&sql.upsert)?;
        let mut update = tx.prepare_cached(&sql.update)?;
        let mut was_inserted = tx.prepare_cached(&format!(
            "SELECT first_synced_at = synced_at FROM {} WHERE id = ?1",
            R::TABLE
        ))?;
        let mut unquarantine = tx.prepare_cached(
            "DELETE FROM quarantine WHERE stream = ?1 AND record_id = ?2
                 AND (modified_date IS NULL OR modified_date <= ?3)",
        )?;
        for rec in &batch.records {
            bind(rec, &mut upsert)?;
            upsert.raw_bind_parameter(now_param, now)?;
            let before = tx.last_insert_rowid();
            let changed = upsert.raw_execute()?;
            let what = match classify_upsert(rec.id(), changed, before, tx.last_insert_rowid()) {
                // An indexed column changed (or nothing did): the full update decides.
                Some(Upserted::Unchanged) => {
                    bind(rec, &mut update)?;
                    update.raw_bind_parameter(now_param, now)?;
                    if update.raw_execute()? == 0 {
                        Upserted::Unchanged
                    } else {
                        Upserted::Updated
                    }
                }
                Some(w) => w,
                // Rare (ids collide with another table's last insert): ask the row, whose
                // two sync times are equal only when this statement inserted it.
                None => {
                    let inserted = was_inserted.query_row([rec.id()], |r| r.get(0))?;
                    if inserted {
                        Upserted::Inserted
                    } else {
                        Upserted::Updated
                    }
                }
            };
            match what {
                Upserted::Inserted => stats.inserted += 1,
                Upserted::Updated => stats.updated += 1,
                Upserted::Unchanged => stats.unchanged += 1,
            }
            if had_quarantine {
                quarantine_delta -=
                    unquarantine.execute(params![R::NAME, rec.id(), rec.modified_date()])? as i64;
            }
        }
    }
    for bad in &batch.bad {
        quarantine(tx, R::NAME, bad, now)?;
        stats.quarantined += 1;
    }
    if !batch.bad.is_empty() {
        quarantine_delta = 0;
    }
    let q = if batch.bad.is_empty() && quarantine_delta == 0 {
        None
    } else {
        Some(tx.query_row("SELECT count(*) FROM quarantine", [], |r| r.get(0))?)
    };
    Ok((stats, q))
}

#[cfg(test)]
mod tests {
    use super::super::SqliteWarehouse;
    use super::super::testutil::{apply, customer};
    use crate::resource::{Customer, CustomerFields, Customers};
    use crate::warehouse::{Confirmed, Mark, RunKind, Warehouse};

    #[test]
    fn upsert_outcome_from_the_last_inserted_rowid() {
        use super::{Upserted, classify_upsert};
        assert_eq!(classify_upsert(7, 0, 3, 3), Some(Upserted::Unchanged));
        assert_eq!(classify_upsert(7, 1, 3, 7), Some(Upserted::Inserted));
        assert_eq!(classify_upsert(7, 1, 3, 3), Some(Upserted::Updated));
        assert_eq!(classify_upsert(7, 1, 7, 7), None, "ambiguous: ask the row");
    }

    /// Several pages in one transaction are applied as they would be one by one: a record
    /// quarantined by a page and stored by a later one leaves the quarantine; each backfill
    /// range's cursor and deletions follow its own pages; the run counts every page.
    #[test]
    fn batches_in_one_transaction_apply_as_one_by_one() {
        use crate::resource::BadRecord;
        use crate::warehouse::{Advance, BackfillRange, BackfillState, Batch};
        let dir = tempfile::tempdir().unwrap();
        let mut wh = SqliteWarehouse::open(&dir.path().join("w.db")).unwrap();
        let t = "2023-01-01T00:00:01.000000Z";
        let t2 = "2023-01-01T00:00:02.000000Z";
        let run =
            Warehouse::<Customers>::begin_run(&mut wh, RunKind::Backfill, &Mark::Start).unwrap();
        // Two ranges: ids (.., 100] and (100, ..); rows 5 and 150 exist and are not listed
        // again, so each range's page marks its own one deleted.
        apply(
            &mut wh,
            run,
            vec![customer(5, t, "old"), customer(150, t, "old")],
            Mark::at(t, Confirmed::Nothing),
        );
        let range = |range_no: i64, lo: i64, hi: Option<i64>| BackfillRange {
            range_no,
            lo,
            hi,
            cursor: lo,
            done: false,
        };
        Warehouse::<Customers>::start_backfill(
            &mut wh,
            &BackfillState {
                run_id: Some(run),
                started_at: t2.into(),
                high_water_date: Some(t2.into()),
                ranges: vec![range(0, i64::MIN, Some(100)), range(1, 100, None)],
            },
        )
        .unwrap();
        let bad = BadRecord {
            id: Some(7),
            modified_date: Some(t.into()),
            raw: "{\"id\": 7}".into(),
            error: "a bad record".into(),
        };
        let batches = [
            Batch {
                records: vec![customer(1, t2, "a")],
                bad: vec![bad],
                advance: Advance::Backfill {
                    range_no: 0,
                    from: i64::MIN,
                    to: Some(7),
                },
            },
            Batch {
                records: vec![customer(120, t2, "b")],
                bad: vec![],
                advance: Advance::Backfill {
                    range_no: 1,
                    from: 100,
                    to: Some(160),
                },
            },
            Batch {
                records: vec![customer(7, t2, "fixed")],
                bad: vec![],
                advance: Advance::Backfill {
                    range_no: 0,
                    from: 7,
                    to: Some(10),
                },
            },
        ];
        let s = Warehouse::<Customers>::apply(&mut wh, run, &batches).unwrap();
        assert_eq!(
            (s.fetched, s.inserted, s.quarantined, s.deleted),
            (4, 3, 1, 2),
            "{s:?}"
        );
        let conn = wh.connection();
        let q: i64 = conn
            .query_row("SELECT count(*) FROM quarantine", [], |r| r.get(0))
            .unwrap();
        assert_eq!(q, 0, "the third page stored what the first quarantined");
        assert_eq!(wh.quarantined, 0);
        let cursors: Vec<(i64, i64)> = conn
            .prepare("SELECT range_no, cursor_id FROM backfill_ranges ORDER BY range_no")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(cursors, [(0, 10), (1, 160)]);
        let deleted: Vec<i64> = conn
            .prepare("SELECT id FROM customers WHERE deleted_at IS NOT NULL ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(deleted, [5, 150]);
        let pages: i64 = conn
            .query_row("SELECT pages FROM sync_runs WHERE id = ?1", [run], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(pages, 1 + 3);
    }

    /// Ids equal to another table's last inserted rowid (here sync_runs' run id) take the
    /// slow path and are still counted right.
    #[test]
    fn counts_hold_when_an_id_equals_the_last_rowid_of_another_table() {
        let dir = tempfile::tempdir().unwrap();
        let mut wh = SqliteWarehouse::open(&dir.path().join("w.db")).unwrap();
        let run =
            Warehouse::<Customers>::begin_run(&mut wh, RunKind::Incremental, &Mark::Start).unwrap();
        let t = "2023-01-01T00:00:01.000000Z";
        let t2 = "2023-01-01T00:00:02.000000Z";
        let s = apply(
            &mut wh,
            run,
            vec![customer(run, t, "a"), customer(run + 1, t, "b")],
            Mark::at(t, Confirmed::Nothing),
        );
        assert_eq!((s.inserted, s.updated, s.unchanged), (2, 0, 0));
        // The last insert was run + 1: its update is the ambiguous case.
        let s = apply(
            &mut wh,
            run,
            vec![customer(run + 1, t2, "b2"), customer(run, t2, "a2")],
            Mark::at(t2, Confirmed::Nothing),
        );
        assert_eq!((s.inserted, s.updated, s.unchanged), (0, 2, 0));
    }

    /// The upsert leaves `email` (indexed) alone, so an unchanged email costs no index write;
    /// a changed one is still stored, by the full update, under the same rules.
    #[test]
    fn indexed_columns_are_set_only_when_they_change() {
        let sql = super::UpsertSql::new(&crate::resource::customers::SPEC);
        assert!(
            !sql.upsert.contains("email = excluded.email"),
            "{}",
            sql.upsert
        );
        assert!(
            sql.upsert
                .contains("modified_date = excluded.modified_date")
        );
        assert!(sql.update.contains("email = ?5"), "{}", sql.update);

        let dir = tempfile::tempdir().unwrap();
        let mut wh = SqliteWarehouse::open(&dir.path().join("w.db")).unwrap();
        let run =
            Warehouse::<Customers>::begin_run(&mut wh, RunKind::Incremental, &Mark::Start).unwrap();
        let (t1, t2, t3) = (
            "2023-01-01T00:00:01.000000Z",
            "2023-01-01T00:00:02.000000Z",
            "2023-01-01T00:00:03.000000Z",
        );
        let with_email = |md: &str, email: &str| {
            Customer::new(CustomerFields {
                email: Some(email),
                ..customer(9, md, "n").fields()
            })
        };
        let mut step = |c: Customer| {
            let s = apply(&mut wh, run, vec![c], Mark::at(t3, Confirmed::Nothing));
            (s.inserted, s.updated, s.unchanged)
        };
        assert_eq!(step(with_email(t2, "a@x")), (1, 0, 0));
        assert_eq!(step(with_email(t3, "b@x")), (0, 1, 0), "newer, new email");
        assert_eq!(
            step(with_email(t3, "c@x")),
            (0, 1, 0),
            "same time, new email"
        );
        assert_eq!(step(with_email(t1, "d@x")), (0, 0, 1), "older: never");
        assert_eq!(step(with_email(t3, "c@x")), (0, 0, 1), "same content");
        let email: String = wh
            .connection()
            .query_row("SELECT email FROM customers WHERE id = 9", [], |r| r.get(0))
            .unwrap();
        assert_eq!(email, "c@x");
    }

    #[test]
    fn upsert_never_goes_back_and_skips_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let mut wh = SqliteWarehouse::open(&dir.path().join("w.db")).unwrap();
        let run =
            Warehouse::<Customers>::begin_run(&mut wh, RunKind::Incremental, &Mark::Start).unwrap();
        let t1 = "2023-01-01T00:00:01.000000Z";
        let t2 = "2023-01-01T00:00:02.000000Z";
        let s = apply(
            &mut wh,
            run,
            vec![customer(1, t2, "new")],
            Mark::at(t2, Confirmed::Nothing),
        );
        assert_eq!((s.inserted, s.updated, s.unchanged), (1, 0, 0));
        let s = apply(
            &mut wh,
            run,
            vec![customer(1, t1, "old")],
            Mark::at(t2, Confirmed::Nothing),
        );
        assert_eq!((s.inserted, s.updated, s.unchanged), (0, 0, 1));
        let s = apply(
            &mut wh,
            run,
            vec![customer(1, t2, "new")],
            Mark::at(t2, Confirmed::Nothing),
        );
        assert_eq!((s.inserted, s.updated, s.unchanged), (0, 0, 1));
        let s = apply(
            &mut wh,
            run,
            vec![customer(1, t2, "same time, new content")],
            Mark::at(t2, Confirmed::Nothing),
        );
        assert_eq!((s.inserted, s.updated, s.unchanged), (0, 1, 0));
        let name: String = wh
            .connection()
            .query_row("SELECT first_name FROM customers WHERE id = 1", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(name, "same time, new content");
        // The mark never moves backward.
        apply(&mut wh, run, vec![], Mark::at(t1, Confirmed::Nothing));
        assert_eq!(
            Warehouse::<Customers>::mark(&mut wh).unwrap(),
            Mark::at(t2, Confirmed::Nothing)
        );
    }
}
