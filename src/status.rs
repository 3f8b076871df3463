//! `oms-sync status`: what the warehouse holds and how fresh it is, from a read-only
//! connection (safe while the daemon writes).

use std::path::Path;

use chrono::Utc;
use serde::Serialize;

use crate::stream::Stream;
use crate::timefmt;
use crate::warehouse::sqlite::SqliteReader;
use crate::warehouse::{Mark, Reader, RunRow, Snapshot, WarehouseError};

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

fn seconds_since(ts: &Option<String>) -> Option<f64> {
    let t = timefmt::parse_api(ts.as_deref()?)?;
    Some((Utc::now() - t).num_milliseconds() as f64 / 1000.0)
}

/// The status of one stream, from a snapshot.
pub fn from_snapshot(location: String, stream: &'static str, s: Snapshot) -> Status {
    let (modified_date, after_id) = s.mark.to_columns();
    let checkpoint = Checkpoint {
        modified_date: modified_date.map(str::to_owned),
        after_id,
        in_words: match s.mark {
            Mark::Start => "none yet (next pass starts from the oldest customer)".into(),
            ref m => m.to_string(),
        },
        updated_at: s.mark_updated_at,
    };
    Status {
        warehouse: location,
        stream,
        lag_seconds: seconds_since(&s.newest_modified_date),
        since_last_success_seconds: seconds_since(&s.last_success_at),
        checkpoint,
        backfill_in_progress: s.backfill.map(|b| BackfillSummary {
            started_at: b.started_at,
            high_water_date: b.high_water_date,
            ranges_done: b.ranges.iter().filter(|r| r.done).count(),
            ranges: b.ranges.len(),
        }),
        customers_live: s.live,
        customers_deleted: s.deleted,
        quarantined: s.quarantined,
        newest_modified_date: s.newest_modified_date,
        last_success_at: s.last_success_at,
        recent_runs: s.recent_runs,
    }
}

/// Reads the status of the customers stream through `reader`.
pub fn read(reader: &mut dyn Reader, stream: Stream) -> Result<Status, WarehouseError> {
    let snapshot = reader.snapshot(stream.name(), stream.table(), RECENT_RUNS)?;
    Ok(from_snapshot(reader.location(), stream.name(), snapshot))
}

/// Reads the status of the customers stream of the SQLite warehouse at `path`.
pub fn read_path(path: &Path) -> Result<Status, WarehouseError> {
    read(&mut SqliteReader::open(path)?, Stream::Customers)
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
            timefmt::parse_api(&r.started_at),
            r.finished_at.as_deref().and_then(timefmt::parse_api),
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
///
/// Every stream is reported; `--json` prints one object per stream (today one: customers).
pub fn print(reader: &mut dyn Reader, json: bool) -> anyhow::Result<()> {
    use std::io::Write;
    let mut text = String::new();
    for stream in Stream::ALL {
        let s = read(reader, *stream)?;
        if json {
            text.push_str(&serde_json::to_string_pretty(&s)?);
            text.push('\n');
        } else {
            text.push_str(&render(&s));
        }
    }
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}
