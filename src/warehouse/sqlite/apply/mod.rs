//! The SQLite dialect of the write core ([`crate::warehouse::write`]): the statements of each
//! step, with SQLite's fast paths (the outcome of an upsert read from `changes()` and the last
//! inserted rowid instead of `RETURNING`; indexed columns left alone unless they change).

use std::collections::HashSet;
use std::path::Path;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::connection::classify;
use super::state::write_mark_if_greater;
use super::upsert::{UpsertSql, bind};
use crate::resource::{BadRecord, Keyed, Resource, Row, Spec};
use crate::timefmt;
use crate::warehouse::write::{self, Consumer, Dialect, Outcome};
use crate::warehouse::{Batch, Mark, RowStats, WarehouseError};

/// What the upsert of row `id` did, from its change count and the connection's last inserted
/// rowid before and after (the record tables' `id` is the rowid). The `DO UPDATE` path and the
/// no-op leave the last inserted rowid alone; only a new row sets it to `id`. None when that
/// cannot tell: the last inserted rowid (of any table) already was `id`.
fn classify_upsert(id: i64, changed: usize, before: i64, after: i64) -> Option<Outcome> {
    match changed {
        0 => Some(Outcome::Unchanged),
        _ if before == id => None,
        _ if after == id => Some(Outcome::Inserted),
        _ => Some(Outcome::Updated),
    }
}

/// The SQLite dialect of the write core, on an open transaction.
pub struct SqliteTx<'a> {
    /// The open transaction (statements run on the connection it holds).
    pub(in crate::warehouse::sqlite) tx: &'a Connection,
    pub(in crate::warehouse::sqlite) sql: &'a UpsertSql,
}

impl Dialect for SqliteTx<'_> {
    type Error = rusqlite::Error;

    fn advance_mark(&mut self, stream: &str, mark: &Mark) -> rusqlite::Result<()> {
        write_mark_if_greater(self.tx, stream, mark)
    }

    fn range_hi(&mut self, stream: &str, range_no: i64) -> rusqlite::Result<Option<i64>> {
        self.tx
            .prepare_cached("SELECT hi FROM backfill_ranges WHERE stream = ?1 AND range_no = ?2")?
            .query_row(params![stream, range_no], |r| r.get(0))
    }

    /// Runs before the batch's rows are written, so in a first load the range is empty and
    /// this costs one index probe; the ids the batch lists are only hashed when there are rows.
    fn mark_deleted(
        &mut self,
        spec: &Spec,
        from: i64,
        to: i64,
        listed: &[i64],
        now: &str,
        deleted: &mut Vec<i64>,
    ) -> rusqlite::Result<()> {
        let table = spec.table;
        let present: Vec<i64> = {
            let mut stmt = self.tx.prepare_cached(&format!(
                "SELECT id FROM {table} WHERE id > ?1 AND id <= ?2 AND deleted_at IS NULL"
            ))?;
            stmt.query_map(params![from, to], |r| r.get::<_, i64>(0))?
                .collect::<rusqlite::Result<_>>()?
        };
        if present.is_empty() {
            return Ok(());
        }
        let listed: HashSet<i64> = listed.iter().copied().collect();
        let mut upd = self.tx.prepare_cached(&format!(
            "UPDATE {table} SET deleted_at = ?2, synced_at = ?2 WHERE id = ?1"
        ))?;
        for id in present.into_iter().filter(|id| !listed.contains(id)) {
            upd.execute(params![id, now])?;
            deleted.push(id);
        }
        Ok(())
    }

    fn move_range(&mut self, stream: &str, range_no: i64, to: Option<i64>) -> rusqlite::Result<()> {
        match to {
            Some(t) => self
                .tx
                .prepare_cached(
                    "UPDATE backfill_ranges SET cursor_id = ?3 WHERE stream = ?1 AND range_no = ?2",
                )?
                .execute(params![stream, range_no, t])?,
            None => self
                .tx
                .prepare_cached(
                    "UPDATE backfill_ranges SET done = 1 WHERE stream = ?1 AND range_no = ?2",
                )?
                .execute(params![stream, range_no])?,
        };
        Ok(())
    }

    fn upsert<R: Resource>(
        &mut self,
        records: &[R::Record],
        now: &str,
        outcomes: &mut Vec<Outcome>,
    ) -> rusqlite::Result<()> {
        let tx = self.tx;
        let now_param = <R::Record as Row>::COLUMNS.len() + 1;
        let mut upsert = tx.prepare_cached(&self.sql.upsert)?;
        let mut update = tx.prepare_cached(&self.sql.update)?;
        let mut was_inserted = tx.prepare_cached(&format!(
            "SELECT first_synced_at = synced_at FROM {} WHERE id = ?1",
            R::TABLE
        ))?;
        for rec in records {
            bind(rec, &mut upsert)?;
            upsert.raw_bind_parameter(now_param, now)?;
            let before = tx.last_insert_rowid();
            let changed = upsert.raw_execute()?;
            outcomes.push(
                match classify_upsert(rec.id(), changed, before, tx.last_insert_rowid()) {
                    // An indexed column changed (or nothing did): the full update decides.
                    Some(Outcome::Unchanged) => {
                        bind(rec, &mut update)?;
                        update.raw_bind_parameter(now_param, now)?;
                        if update.raw_execute()? == 0 {
                            Outcome::Unchanged
                        } else {
                            Outcome::Updated
                        }
                    }
                    Some(w) => w,
                    // Rare (ids collide with another table's last insert): ask the row, whose
                    // two sync times are equal only when this statement inserted it.
                    None => {
                        if was_inserted.query_row([rec.id()], |r| r.get(0))? {
                            Outcome::Inserted
                        } else {
                            Outcome::Updated
                        }
                    }
                },
            );
        }
        Ok(())
    }

    fn stored_versions(
        &mut self,
        spec: &Spec,
        ids: &[i64],
    ) -> rusqlite::Result<Vec<Option<String>>> {
        let mut stmt = self.tx.prepare_cached(&format!(
            "SELECT modified_date FROM {} WHERE id = ?1",
            spec.table
        ))?;
        ids.iter()
            .map(|id| stmt.query_row([id], |r| r.get(0)).optional())
            .collect()
    }

    fn unquarantine<R: Resource>(
        &mut self,
        stream: &str,
        records: &[R::Record],
    ) -> rusqlite::Result<u64> {
        let mut unquarantine = self.tx.prepare_cached(
            "DELETE FROM quarantine WHERE stream = ?1 AND record_id = ?2
                 AND (modified_date IS NULL OR modified_date <= ?3)",
        )?;
        let mut n = 0;
        for rec in records {
            n += unquarantine.execute(params![stream, rec.id(), rec.modified_date()])? as u64;
        }
        Ok(n)
    }

    fn quarantine(&mut self, stream: &str, bad: &BadRecord, now: &str) -> rusqlite::Result<()> {
        quarantine(self.tx, stream, bad, now)
    }

    fn quarantine_count(&mut self) -> rusqlite::Result<i64> {
        self.tx
            .query_row("SELECT count(*) FROM quarantine", [], |r| r.get(0))
    }

    fn add_to_run(&mut self, run: i64, pages: u64, stats: &RowStats) -> rusqlite::Result<()> {
        self.tx
            .prepare_cached(
                "UPDATE sync_runs SET pages = pages + ?2, rows_fetched = rows_fetched + ?3,
                     rows_inserted = rows_inserted + ?4, rows_updated = rows_updated + ?5,
                     rows_unchanged = rows_unchanged + ?6, rows_deleted = rows_deleted + ?7,
                     rows_quarantined = rows_quarantined + ?8,
                     versions_written = versions_written + ?9
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
                stats.quarantined as i64,
                stats.versions as i64
            ])?;
        Ok(())
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

/// Applies `batches` in one transaction with the write core ([`write::apply_batches`]);
/// `quarantined` is the warehouse's count of quarantined rows, kept current.
pub(super) fn apply_batches<R: Resource>(
    conn: &mut Connection,
    path: &Path,
    quarantined: &mut i64,
    run: i64,
    sql: &UpsertSql,
    batches: &[Batch<R::Record>],
    consumer: Option<&mut dyn for<'t> Consumer<SqliteTx<'t>>>,
) -> Result<RowStats, WarehouseError> {
    let now = timefmt::now_canonical();
    let before = *quarantined;
    let run_tx = |conn: &mut Connection| -> rusqlite::Result<(RowStats, Option<i64>)> {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut d = SqliteTx { tx: &tx, sql };
        let consumer = consumer.map(|c| c as &mut dyn Consumer<SqliteTx<'_>>);
        let out = write::apply_batches::<R, _>(&mut d, before, run, batches, &now, consumer)?;
        tx.commit()?;
        Ok(out)
    };
    let (stats, q) = run_tx(conn).map_err(|e| classify(path, "writing a page", e))?;
    if let Some(q) = q {
        *quarantined = q;
    }
    Ok(stats)
}

#[cfg(test)]
mod tests;
