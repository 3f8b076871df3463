//! The PostgreSQL statements of history mode ([`crate::warehouse::history`]): each one
//! statement over the batch's ids (`= ANY($1)`), versions copied from the record table's
//! stored rows.

use postgres::types::ToSql;

use super::apply::PgTx;
use crate::warehouse::history::{HistoryDialect, HistoryTable, Ids};

/// `WHERE` for the source rows of `ids` (`$1` the id array), with `alias.` before `id`.
fn source_filter(ids: Ids<'_>, alias: &str) -> String {
    match ids {
        Ids::These(_) => format!("{alias}id = ANY($1::bigint[])"),
        Ids::All => "true".into(),
    }
}

impl PgTx<'_, '_> {
    /// Runs `sql`, with the id array as `$1` unless `Ids::All`; the rows changed.
    fn for_ids(&mut self, sql: &str, ids: Ids<'_>) -> Result<u64, postgres::Error> {
        match ids {
            Ids::These(ids) => self.tx.execute(sql, &[&ids as &(dyn ToSql + Sync)]),
            Ids::All => self.tx.execute(sql, &[]),
        }
    }
}

impl HistoryDialect for PgTx<'_, '_> {
    fn history_close_overlapped(
        &mut self,
        h: &HistoryTable,
        ids: Ids<'_>,
    ) -> Result<(), postgres::Error> {
        let sql = format!(
            "UPDATE {t} AS h SET valid_to = c.modified_date FROM {src} AS c \
             WHERE {filter} AND h.id = c.id AND h.valid_from < c.modified_date \
               AND (h.valid_to IS NULL OR h.valid_to > c.modified_date)",
            t = h.table,
            src = h.source,
            filter = source_filter(ids, "c."),
        );
        self.for_ids(&sql, ids).map(drop)
    }

    fn history_store(&mut self, h: &HistoryTable, ids: Ids<'_>) -> Result<u64, postgres::Error> {
        let sql = h.store_sql(&source_filter(ids, ""));
        self.for_ids(&sql, ids)
    }

    fn history_close_deleted(
        &mut self,
        h: &HistoryTable,
        ids: &[i64],
    ) -> Result<(), postgres::Error> {
        let sql = format!(
            "UPDATE {t} AS h SET valid_to = c.deleted_at FROM {src} AS c \
             WHERE c.id = ANY($1::bigint[]) AND h.id = c.id AND h.valid_to IS NULL",
            t = h.table,
            src = h.source,
        );
        self.for_ids(&sql, Ids::These(ids)).map(drop)
    }

    fn history_enabled(&mut self, stream: &str) -> Result<Option<bool>, postgres::Error> {
        self.tx
            .query_opt(
                "SELECT enabled FROM history_state WHERE stream = $1",
                &[&stream],
            )?
            .map(|r| r.try_get(0))
            .transpose()
    }

    fn set_history_enabled(
        &mut self,
        stream: &str,
        on: bool,
        now: &str,
    ) -> Result<(), postgres::Error> {
        self.tx.execute(
            "INSERT INTO history_state (stream, enabled, changed_at)
             VALUES ($1, $2, $3::text::timestamptz)
             ON CONFLICT (stream) DO UPDATE SET enabled = excluded.enabled, changed_at = excluded.changed_at",
            &[&stream, &on, &now],
        )?;
        Ok(())
    }

    fn add_versions_to_run(&mut self, run: i64, versions: u64) -> Result<(), postgres::Error> {
        self.tx.execute(
            "UPDATE sync_runs SET versions_written = versions_written + $2 WHERE id = $1",
            &[&run, &(versions as i64)],
        )?;
        Ok(())
    }
}
