//! The SQLite statements of history mode ([`crate::warehouse::history`]): one id at a time
//! through prepared statements (each a primary-key probe), versions copied from the record
//! table's stored row.

use rusqlite::{OptionalExtension, params};

use super::apply::SqliteTx;
use crate::warehouse::history::{HistoryDialect, HistoryTable, Ids};

/// `WHERE` for the source rows of `ids` (`?1` is the id), with `alias.` before `id`.
fn source_filter(ids: Ids<'_>, alias: &str) -> String {
    match ids {
        Ids::These(_) => format!("{alias}id = ?1"),
        Ids::All => "true".into(),
    }
}

impl SqliteTx<'_> {
    /// Runs `sql` once per id of `ids` (bound as `?1`), or once for `Ids::All`; the rows changed.
    fn per_id(&mut self, sql: &str, ids: Ids<'_>) -> rusqlite::Result<u64> {
        let mut stmt = self.tx.prepare_cached(sql)?;
        match ids {
            Ids::These(ids) => {
                let mut n = 0;
                for id in ids {
                    n += stmt.execute([id])? as u64;
                }
                Ok(n)
            }
            Ids::All => Ok(stmt.execute([])? as u64),
        }
    }
}

impl HistoryDialect for SqliteTx<'_> {
    fn history_close_overlapped(&mut self, h: &HistoryTable, ids: Ids<'_>) -> rusqlite::Result<()> {
        let t = h.table;
        let sql = format!(
            "UPDATE {t} SET valid_to = c.modified_date FROM {src} AS c \
             WHERE {filter} AND {t}.id = c.id AND {t}.valid_from < c.modified_date \
               AND ({t}.valid_to IS NULL OR {t}.valid_to > c.modified_date)",
            src = h.source,
            filter = source_filter(ids, "c."),
        );
        self.per_id(&sql, ids).map(drop)
    }

    fn history_store(&mut self, h: &HistoryTable, ids: Ids<'_>) -> rusqlite::Result<u64> {
        let sql = h.store_sql(&source_filter(ids, ""));
        self.per_id(&sql, ids)
    }

    fn history_close_deleted(&mut self, h: &HistoryTable, ids: &[i64]) -> rusqlite::Result<()> {
        let sql = format!(
            "UPDATE {t} SET valid_to = (SELECT deleted_at FROM {src} WHERE id = ?1) \
             WHERE id = ?1 AND valid_to IS NULL",
            t = h.table,
            src = h.source,
        );
        self.per_id(&sql, Ids::These(ids)).map(drop)
    }

    fn history_enabled(&mut self, stream: &str) -> rusqlite::Result<Option<bool>> {
        self.tx
            .prepare_cached("SELECT enabled FROM history_state WHERE stream = ?1")?
            .query_row([stream], |r| r.get(0))
            .optional()
    }

    fn set_history_enabled(&mut self, stream: &str, on: bool, now: &str) -> rusqlite::Result<()> {
        self.tx.execute(
            "INSERT INTO history_state (stream, enabled, changed_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (stream) DO UPDATE SET enabled = excluded.enabled, changed_at = excluded.changed_at",
            params![stream, on, now],
        )?;
        Ok(())
    }

    fn add_versions_to_run(&mut self, run: i64, versions: u64) -> rusqlite::Result<()> {
        self.tx.execute(
            "UPDATE sync_runs SET versions_written = versions_written + ?2 WHERE id = ?1",
            params![run, versions as i64],
        )?;
        Ok(())
    }
}
