//! `oms-sync status`: what the warehouse holds and how fresh it is, from a read-only
//! connection (safe while the daemon writes).

use std::path::Path;

use chrono::Utc;
use serde::Serialize;

use crate::stream::Stream;
use crate::timefmt;
use crate::warehouse::sqlite::SqliteReader;
use crate::warehouse::{HistoryStatus, Mark, Reader, RunRow, Snapshot, WarehouseError};

/// Recent runs shown.
pub const RECENT_RUNS: usize = 5;

/// `status --json`: the warehouse, a total over every stream, and each stream's status
/// (an object keyed by stream name, in the order passes run).
#[derive(Debug, Serialize)]
pub struct Report {
    pub warehouse: String,
    pub total: Total,
    #[serde(serialize_with = "by_name")]
    pub streams: Vec<Status>,
}

/// Every stream together.
#[derive(Debug, Serialize)]
pub struct Total {
    pub live: i64,
    pub deleted: i64,
    pub quarantined: i64,
    /// The stalest stream's lag, among streams that hold rows (null: none holds a row).
    pub lag_seconds: Option<f64>,
    /// The stalest stream's time since its last successful pass; null while any stream has
    /// never had one, so a health check on it cannot pass before every stream has synced.
    pub since_last_success_seconds: Option<f64>,
}

/// One stream.
#[derive(Debug, Serialize)]
pub struct Status {
    pub stream: &'static str,
    pub table: &'static str,
    /// The incremental mark: `(modified_date, id)`.
    pub checkpoint: Checkpoint,
    pub backfill_in_progress: Option<BackfillSummary>,
    pub live: i64,
    pub deleted: i64,
    pub quarantined: i64,
    pub newest_modified_date: Option<String>,
    /// Now minus the newest stored `modified_date`.
    pub lag_seconds: Option<f64>,
    pub last_success_at: Option<String>,
    /// Now minus the end of the last successful pass (null: none ever succeeded).
    pub since_last_success_seconds: Option<f64>,
    /// End of the last backfill (reconciliation) that finished; the daemon's next one is due
    /// `sync.reconcile_every` after it (null: none finished, so the daemon starts one).
    pub last_backfill_at: Option<String>,
    pub since_last_backfill_seconds: Option<f64>,
    /// Now minus the start of the stream's oldest recorded run (what the daemon's schedule
    /// counts from while no backfill has finished).
    #[serde(skip)]
    pub since_first_run_seconds: Option<f64>,
    /// History mode (null for a stream that keeps no history table).
    pub history: Option<HistoryStatus>,
    pub recent_runs: Vec<RunRow>,
}

fn by_name<S: serde::Serializer>(streams: &[Status], ser: S) -> Result<S::Ok, S::Error> {
    ser.collect_map(streams.iter().map(|s| (s.stream, s)))
}

impl Report {
    /// The status of the stream named `name`.
    pub fn stream(&self, name: &str) -> Option<&Status> {
        self.streams.iter().find(|s| s.stream == name)
    }
}

fn max_of(values: impl Iterator<Item = f64>) -> Option<f64> {
    values.reduce(f64::max)
}

impl Total {
    fn of(streams: &[Status]) -> Total {
        let since: Option<Vec<f64>> = streams
            .iter()
            .map(|s| s.since_last_success_seconds)
            .collect();
        Total {
            live: streams.iter().map(|s| s.live).sum(),
            deleted: streams.iter().map(|s| s.deleted).sum(),
            quarantined: streams.iter().map(|s| s.quarantined).sum(),
            lag_seconds: max_of(streams.iter().filter_map(|s| s.lag_seconds)),
            since_last_success_seconds: since.and_then(|v| max_of(v.into_iter())),
        }
    }
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
pub fn from_snapshot(stream: Stream, s: Snapshot) -> Status {
    let (modified_date, after_id) = s.mark.to_columns();
    let checkpoint = Checkpoint {
        modified_date: modified_date.map(str::to_owned),
        after_id,
        in_words: match s.mark {
            Mark::Start => "none yet (next pass starts from the oldest record)".into(),
            ref m => m.to_string(),
        },
        updated_at: s.mark_updated_at,
    };
    Status {
        stream: stream.name(),
        table: stream.table(),
        lag_seconds: seconds_since(&s.newest_modified_date),
        since_last_success_seconds: seconds_since(&s.last_success_at),
        since_last_backfill_seconds: seconds_since(&s.last_backfill_at),
        last_backfill_at: s.last_backfill_at,
        since_first_run_seconds: seconds_since(&s.first_run_at),
        checkpoint,
        backfill_in_progress: s.backfill.map(|b| BackfillSummary {
            started_at: b.started_at,
            high_water_date: b.high_water_date,
            ranges_done: b.ranges.iter().filter(|r| r.done).count(),
            ranges: b.ranges.len(),
        }),
        live: s.live,
        deleted: s.deleted,
        quarantined: s.quarantined,
        newest_modified_date: s.newest_modified_date,
        last_success_at: s.last_success_at,
        history: s.history,
        recent_runs: s.recent_runs,
    }
}

/// Reads the status of one stream through `reader`.
pub fn read_stream(reader: &mut dyn Reader, stream: Stream) -> Result<Status, WarehouseError> {
    let snapshot = reader.snapshot(stream.name(), stream.table(), RECENT_RUNS)?;
    Ok(from_snapshot(stream, snapshot))
}

/// Reads the status of the streams the warehouse knows through `reader`: those that have run
/// (a run, a checkpoint or rows), or customers alone in a warehouse where none has (what
/// `sync.streams` runs by default). Streams never enabled stay out, so the totals' freshness
/// is that of the streams in use.
pub fn read(reader: &mut dyn Reader) -> Result<Report, WarehouseError> {
    let mut streams = Vec::new();
    for stream in Stream::ALL {
        let snapshot = reader.snapshot(stream.name(), stream.table(), RECENT_RUNS)?;
        let used = snapshot.first_run_at.is_some()
            || snapshot.mark != Mark::Start
            || snapshot.live + snapshot.deleted + snapshot.quarantined > 0;
        if used {
            streams.push(from_snapshot(*stream, snapshot));
        }
    }
    if streams.is_empty() {
        streams = Stream::DEFAULT
            .iter()
            .map(|s| read_stream(reader, *s))
            .collect::<Result<Vec<_>, _>>()?;
    }
    Ok(Report {
        warehouse: reader.location(),
        total: Total::of(&streams),
        streams,
    })
}

/// Reads the status of the SQLite warehouse at `path`.
pub fn read_path(path: &Path) -> Result<Report, WarehouseError> {
    read(&mut SqliteReader::open(path)?)
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

/// Renders the status for people: the warehouse, then one block per stream.
pub fn render(r: &Report) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "warehouse   {}", r.warehouse);
    for s in &r.streams {
        out.push_str(&render_stream(s));
    }
    out
}

fn render_stream(s: &Status) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "stream      {} (table {})", s.stream, s.table);
    let _ = writeln!(out, "checkpoint  {}", s.checkpoint.in_words);
    if let Some(b) = &s.backfill_in_progress {
        let _ = writeln!(
            out,
            "backfill    in progress, started {} ({} of {} id ranges done); the daemon resumes it between its passes (or --backfill while no daemon runs)",
            b.started_at, b.ranges_done, b.ranges
        );
    }
    let reconciled = match s.since_last_backfill_seconds {
        None => "no backfill finished yet".to_string(),
        since => format!("last backfill finished {} ago", human_secs(since)),
    };
    let _ = writeln!(out, "reconcile   {reconciled}");
    let _ = writeln!(
        out,
        "rows        {} live, {} deleted, {} quarantined",
        s.live, s.deleted, s.quarantined
    );
    let newest = match s.lag_seconds {
        None => "no rows stored yet".to_string(),
        lag => format!("newest modified_date {} ago", human_secs(lag)),
    };
    let last = match s.since_last_success_seconds {
        None => "no successful pass yet".to_string(),
        since => format!("last successful pass ended {} ago", human_secs(since)),
    };
    let _ = writeln!(out, "lag         {newest}; {last}");
    if let Some(h) = &s.history {
        let since = h.changed_at.as_deref().unwrap_or("-");
        let _ = match (h.on, &h.changed_at) {
            (true, _) => writeln!(
                out,
                "history     on since {since}: {} versions in {}",
                h.versions, h.table
            ),
            (false, Some(_)) => writeln!(
                out,
                "history     off since {since}: {} versions kept in {}, no longer written",
                h.versions, h.table
            ),
            (false, None) => writeln!(out, "history     off (sync.history = true keeps it)"),
        };
    }
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
            "  #{:<5} {:<11} {:<11} {}Z {:>8}  pages {:>5}  fetched {:>8}  new {} updated {} deleted {} quarantined {}{}{}",
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
            if r.versions_written > 0 {
                format!(" versions {}", r.versions_written)
            } else {
                String::new()
            },
            r.error
                .as_deref()
                .map(|e| format!("\n         error: {}", crate::text::one_line(e)))
                .unwrap_or_default()
        );
    }
    out
}

/// `status` / `status --json` on stdout: every stream, and their total. A closed stdout is an
/// `io::Error` (`BrokenPipe`), never a panic.
pub fn print(reader: &mut dyn Reader, json: bool) -> anyhow::Result<()> {
    use std::io::Write;
    let report = read(reader)?;
    let text = if json {
        let mut t = serde_json::to_string_pretty(&report)?;
        t.push('\n');
        t
    } else {
        render(&report)
    };
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}
