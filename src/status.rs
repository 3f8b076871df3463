//! `oms-sync status`: what the warehouse holds and how fresh it is, from a read-only
//! connection (safe while the daemon writes).

use std::path::Path;

use chrono::Utc;
use rusqlite::{Connection, OptionalExtension};
use serde::Serialize;

use crate::resource::{Customers, Resource};
use crate::timefmt;
use crate::warehouse::Mark;
use crate::warehouse::WarehouseError;
use crate::warehouse::sqlite::{open_connection, read_backfill};

/// Recent runs shown.
pub const RECENT_RUNS: usize = 5;

#[derive(Debug, Serialize)]
pub struct Status {
    pub warehouse: String,
    pub stream: &'static str,
    /// The incremental mark: `(modified_date, id)`.
    pub checkpoint: Checkpoint,
    pub backfill_in_progress: Option<BackfillSummary>,
    pub customers_live: i64,
    pub customers_deleted: i64,
    pub quarantined: i64,
    pub newest_modified_date: Option<String>,
    /// Now minus the newest stored `modified_date`.
    pub lag_seconds: Option<f64>,
    pub last_success_at: Option<String>,
    /// Now minus the end of the last successful pass.
    pub since_last_success_seconds: Option<f64>,
    pub recent_runs: Vec<RunRow>,
}

#[derive(Debug, Serialize)]
pub struct Checkpoint {
    pub modified_date: Option<String>,
    pub after_id: Option<i64>,
    /// What the checkpoint claims, in words (the [`Mark`]'s display).
    pub in_words: String,
    pub updated_at: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct BackfillSummary {
    pub started_at: String,
    pub high_water_date: Option<String>,
    pub ranges_done: usize,
    pub ranges: usize,
}

#[derive(Debug, Serialize)]
pub struct RunRow {
    pub id: i64,
    pub kind: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub status: String,
    pub error: Option<String>,
    pub pages: i64,
    pub rows_fetched: i64,
    pub rows_inserted: i64,
    pub rows_updated: i64,
    pub rows_unchanged: i64,
    pub rows_deleted: i64,
    pub rows_quarantined: i64,
}

fn seconds_since(ts: &Option<String>) -> Option<f64> {
    let t = timefmt::parse_canonical(ts.as_deref()?)?;
    Some((Utc::now() - t).num_milliseconds() as f64 / 1000.0)
}

/// Reads the status of the warehouse at `path`.
pub fn read(path: &Path) -> Result<Status, WarehouseError> {
    if !path.exists() {
        return Err(WarehouseError::Open {
            path: path.to_path_buf(),
            reason: "the file does not exist".into(),
            fix: "run oms-sync --once or --backfill first, or check warehouse.path",
        });
    }
    if path.is_dir() {
        return Err(WarehouseError::Open {
            path: path.to_path_buf(),
            reason: "it is a directory".into(),
            fix: "name the warehouse file itself (warehouse.path or --db), e.g. DIR/warehouse.db",
        });
    }
    let conn = open_connection(path, true)?;
    let q = |context: &str, e: rusqlite::Error| WarehouseError::Sqlite {
        path: path.to_path_buf(),
        context: context.to_string(),
        source: e,
    };
    let stream = Customers::NAME;
    let checkpoint = conn
        .query_row(
            "SELECT mark_modified_date, mark_after_id, updated_at FROM sync_state WHERE stream = ?1",
            [stream],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .map_err(|e| q("reading the checkpoint", e))?
        .map_or_else(
            || Checkpoint {
                modified_date: None,
                after_id: None,
                in_words: "none yet (next pass starts from the oldest customer)".into(),
                updated_at: None,
            },
            |(modified_date, after_id, updated_at): (Option<String>, Option<i64>, _)| Checkpoint {
                in_words: Mark::from_columns(modified_date.clone(), after_id).to_string(),
                modified_date,
                after_id,
                updated_at,
            },
        );
    let backfill = read_backfill(&conn, stream)
        .map_err(|e| q("reading the backfill", e))?
        .map(|b| BackfillSummary {
            started_at: b.started_at,
            high_water_date: b.high_water_date,
            ranges_done: b.ranges.iter().filter(|r| r.done).count(),
            ranges: b.ranges.len(),
        });
    let (live, deleted, newest): (i64, i64, Option<String>) = conn
        .query_row(
            &format!(
                "SELECT count(*) FILTER (WHERE deleted_at IS NULL), count(*) FILTER (WHERE deleted_at IS NOT NULL),
                        (SELECT max(modified_date) FROM {})
                 FROM {}",
                Customers::TABLE,
                Customers::TABLE
            ),
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .map_err(|e| q("counting rows", e))?;
    let quarantined: i64 = conn
        .query_row(
            "SELECT count(*) FROM quarantine WHERE stream = ?1",
            [stream],
            |r| r.get(0),
        )
        .map_err(|e| q("counting quarantine", e))?;
    let last_success_at: Option<String> = conn
        .query_row(
            "SELECT max(finished_at) FROM sync_runs WHERE stream = ?1 AND status = 'succeeded'",
            [stream],
            |r| r.get(0),
        )
        .map_err(|e| q("reading runs", e))?;
    let recent_runs = recent_runs(&conn, stream).map_err(|e| q("reading runs", e))?;
    Ok(Status {
        warehouse: path.display().to_string(),
        stream,
        lag_seconds: seconds_since(&newest),
        since_last_success_seconds: seconds_since(&last_success_at),
        checkpoint,
        backfill_in_progress: backfill,
        customers_live: live,
        customers_deleted: deleted,
        quarantined,
        newest_modified_date: newest,
        last_success_at,
        recent_runs,
    })
}

fn recent_runs(conn: &Connection, stream: &str) -> rusqlite::Result<Vec<RunRow>> {
    let mut stmt = conn.prepare(
        "SELECT id, kind, started_at, finished_at, status, error, pages, rows_fetched,
                rows_inserted, rows_updated, rows_unchanged, rows_deleted, rows_quarantined
         FROM sync_runs WHERE stream = ?1 ORDER BY id DESC LIMIT ?2",
    )?;
    stmt.query_map(rusqlite::params![stream, RECENT_RUNS as i64], |r| {
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
        })
    })?
    .collect()
}

fn human_secs(s: Option<f64>) -> String {
    match s {
        None => "-".into(),
        Some(s) if s < 120.0 => format!("{s:.0}s"),
        Some(s) if s < 7200.0 => format!("{:.0}m", s / 60.0),
        Some(s) if s < 172_800.0 => format!("{:.1}h", s / 3600.0),
        Some(s) => format!("{:.1}d", s / 86400.0),
    }
}

/// Renders the status for people.
pub fn render(s: &Status) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "warehouse   {}", s.warehouse);
    let _ = writeln!(out, "checkpoint  {}", s.checkpoint.in_words);
    if let Some(b) = &s.backfill_in_progress {
        let _ = writeln!(
            out,
            "backfill    unfinished, started {} ({} of {} id ranges done); --backfill resumes it",
            b.started_at, b.ranges_done, b.ranges
        );
    }
    let _ = writeln!(
        out,
        "customers   {} live, {} deleted, {} quarantined",
        s.customers_live, s.customers_deleted, s.quarantined
    );
    let newest = match s.lag_seconds {
        None => "no customers stored yet".to_string(),
        lag => format!("newest modified_date {} ago", human_secs(lag)),
    };
    let last = match s.since_last_success_seconds {
        None => "no successful pass yet".to_string(),
        since => format!("last successful pass ended {} ago", human_secs(since)),
    };
    let _ = writeln!(out, "lag         {newest}; {last}");
    let _ = writeln!(out, "recent runs (newest first)");
    if s.recent_runs.is_empty() {
        let _ = writeln!(out, "  (none)");
    }
    for r in &s.recent_runs {
        let took = match (
            timefmt::parse_canonical(&r.started_at),
            r.finished_at.as_deref().and_then(timefmt::parse_canonical),
        ) {
            (Some(a), Some(b)) => format!("{:.1}s", (b - a).num_milliseconds() as f64 / 1000.0),
            _ => "-".into(),
        };
        // Seconds are enough here; --json has the full timestamps.
        let started = r.started_at.get(..19).unwrap_or(&r.started_at);
        let _ = writeln!(
            out,
            "  #{:<5} {:<11} {:<11} {}Z {:>8}  pages {:>5}  fetched {:>8}  new {} updated {} deleted {} quarantined {}{}",
            r.id,
            r.kind,
            r.status,
            started,
            took,
            r.pages,
            r.rows_fetched,
            r.rows_inserted,
            r.rows_updated,
            r.rows_deleted,
            r.rows_quarantined,
            r.error
                .as_deref()
                .map(|e| format!("\n         error: {}", crate::notify::one_line(e)))
                .unwrap_or_default()
        );
    }
    out
}

/// `status` / `status --json` on stdout. A closed stdout is an `io::Error` (`BrokenPipe`),
/// never a panic.
pub fn print(path: &Path, json: bool) -> anyhow::Result<()> {
    use std::io::Write;
    let s = read(path)?;
    let text = if json {
        format!("{}\n", serde_json::to_string_pretty(&s)?)
    } else {
        render(&s)
    };
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}
