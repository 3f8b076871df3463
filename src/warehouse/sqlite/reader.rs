//! The SQLite [`Reader`]: a read-only connection (WAL readers never block the writer), no lock.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};

use super::connection::{Contents, inspect, open_connection};
use super::state::read_backfill;
use crate::warehouse::history::history_table_name;
use crate::warehouse::{HistoryStatus, Location, Mark, Reader, RunRow, Snapshot, WarehouseError};

/// A read-only view of a SQLite warehouse file.
pub struct SqliteReader {
    conn: Connection,
    path: PathBuf,
}

impl SqliteReader {
    /// Opens an existing warehouse read-only; a missing file or a directory is an error with
    /// its fix (a reader never creates a warehouse).
    pub fn open(path: &Path) -> Result<Self, WarehouseError> {
        if !path.exists() {
            return Err(WarehouseError::Unusable {
                at: Location::file(path),
                what: "cannot be opened",
                reason: "the file does not exist".into(),
                fix: "run oms-sync --once or --backfill first, or check warehouse.path",
            });
        }
        if path.is_dir() {
            return Err(WarehouseError::Unusable {
                at: Location::file(path),
                what: "cannot be opened",
                reason: "it is a directory".into(),
                fix: "name the warehouse file itself (warehouse.path or --db), e.g. DIR/warehouse.db",
            });
        }
        if inspect(path, false)? == Contents::Empty {
            return Err(WarehouseError::Unusable {
                at: Location::file(path),
                what: "cannot be opened",
                reason: "it holds no warehouse yet".into(),
                fix: "run oms-sync --once or --backfill first, or check warehouse.path",
            });
        }
        Ok(SqliteReader {
            conn: open_connection(path, true)?,
            path: path.to_path_buf(),
        })
    }

    fn err(&self, context: &str, e: rusqlite::Error) -> WarehouseError {
        super::connection::failed(&self.path, context, &e)
    }
}

impl Reader for SqliteReader {
    fn location(&self) -> String {
        self.path.display().to_string()
    }

    fn snapshot(
        &mut self,
        stream: &str,
        table: &str,
        recent_runs: usize,
    ) -> Result<Snapshot, WarehouseError> {
        let conn = &self.conn;
        let (mark, mark_updated_at) = conn
            .query_row(
                "SELECT mark_modified_date, mark_after_id, updated_at FROM sync_state WHERE stream = ?1",
                [stream],
                |r| Ok((Mark::from_columns(r.get(0)?, r.get(1)?), r.get(2)?)),
            )
            .optional()
            .map_err(|e| self.err("reading the checkpoint", e))?
            .unwrap_or((Mark::Start, None));
        let backfill =
            read_backfill(conn, stream).map_err(|e| self.err("reading the backfill", e))?;
        let (live, deleted, newest_modified_date) = conn
            .query_row(
                &format!(
                    "SELECT count(*) FILTER (WHERE deleted_at IS NULL), count(*) FILTER (WHERE deleted_at IS NOT NULL),
                            (SELECT max(modified_date) FROM {table})
                     FROM {table}"
                ),
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .map_err(|e| self.err("counting rows", e))?;
        let quarantined = conn
            .query_row(
                "SELECT count(*) FROM quarantine WHERE stream = ?1",
                [stream],
                |r| r.get(0),
            )
            .map_err(|e| self.err("counting quarantine", e))?;
        let last_success_at = conn
            .query_row(
                "SELECT max(finished_at) FROM sync_runs WHERE stream = ?1 AND status = 'succeeded'",
                [stream],
                |r| r.get(0),
            )
            .map_err(|e| self.err("reading runs", e))?;
        let (last_backfill_at, first_run_at) = conn
            .query_row(
                "SELECT max(finished_at) FILTER (WHERE kind = 'backfill' AND status = 'succeeded'), min(started_at)
                 FROM sync_runs WHERE stream = ?1",
                [stream],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(|e| self.err("reading runs", e))?;
        let recent_runs =
            read_runs(conn, stream, recent_runs).map_err(|e| self.err("reading runs", e))?;
        let history = match history_table_name(table) {
            None => None,
            Some(h) => {
                let (on, changed_at) = conn
                    .query_row(
                        "SELECT enabled, changed_at FROM history_state WHERE stream = ?1",
                        [stream],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()
                    .map_err(|e| self.err("reading the history state", e))?
                    .unwrap_or((false, None));
                let versions = conn
                    .query_row(&format!("SELECT count(*) FROM {h}"), [], |r| r.get(0))
                    .map_err(|e| self.err("counting history versions", e))?;
                Some(HistoryStatus {
                    table: h.to_string(),
                    on,
                    changed_at,
                    versions,
                })
            }
        };
        Ok(Snapshot {
            mark,
            mark_updated_at,
            backfill,
            live,
            deleted,
            quarantined,
            newest_modified_date,
            last_success_at,
            last_backfill_at,
            first_run_at,
            recent_runs,
            history,
        })
    }
}

fn read_runs(conn: &Connection, stream: &str, n: usize) -> rusqlite::Result<Vec<RunRow>> {
    let mut stmt = conn.prepare(
        "SELECT id, kind, started_at, finished_at, status, error, pages, rows_fetched,
                rows_inserted, rows_updated, rows_unchanged, rows_deleted, rows_quarantined,
                mark_before, mark_after, versions_written
         FROM sync_runs WHERE stream = ?1 ORDER BY id DESC LIMIT ?2",
    )?;
    stmt.query_map(params![stream, n as i64], |r| {
        Ok(RunRow {
            id: r.get(0)?,
            kind: r.get(1)?,
            started_at: r.get(2)?,
            finished_at: r.get(3)?,
            status: r.get(4)?,
            error: r.get(5)?,
            pages: r.get(6)?,
            rows_fetched: r.get(7)?,
            rows_inserted: r.get(8)?,
            rows_updated: r.get(9)?,
            rows_unchanged: r.get(10)?,
            rows_deleted: r.get(11)?,
            rows_quarantined: r.get(12)?,
            mark_before: r.get(13)?,
            mark_after: r.get(14)?,
            versions_written: r.get(15)?,
        })
    })?
    .collect()
}
