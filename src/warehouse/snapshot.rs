//! A read-only view of a warehouse for one stream: what `status`, the metrics and the tests
//! need, read without the writer lock (safe while a pass writes), whatever the backend.

use serde::Serialize;

use super::{BackfillState, Mark, WarehouseError};

/// What a warehouse holds for one stream.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub mark: Mark,
    /// When the mark last moved.
    pub mark_updated_at: Option<String>,
    pub backfill: Option<BackfillState>,
    /// Rows the API still lists, and rows a backfill marked deleted.
    pub live: i64,
    pub deleted: i64,
    pub quarantined: i64,
    pub newest_modified_date: Option<String>,
    /// End of the last successful pass.
    pub last_success_at: Option<String>,
    /// End of the last backfill that finished (a succeeded backfill run).
    pub last_backfill_at: Option<String>,
    /// Start of the stream's oldest recorded run.
    pub first_run_at: Option<String>,
    /// Newest first.
    pub recent_runs: Vec<RunRow>,
    /// History mode, for a stream that keeps a history table.
    pub history: Option<HistoryStatus>,
}

/// History mode of a stream, as the warehouse records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HistoryStatus {
    /// The history table.
    pub table: String,
    /// Whether passes write it (turned on or off by the first pass after `sync.history` changed).
    pub on: bool,
    /// When it was last turned on or off (null: never turned on).
    pub changed_at: Option<String>,
    /// Rows (versions) it holds.
    pub versions: i64,
}

/// One row of `sync_runs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
    /// History versions written (0 while history is off).
    pub versions_written: i64,
    /// The checkpoint in words when the run began and when it ended.
    pub mark_before: Option<String>,
    pub mark_after: Option<String>,
}

/// Reads snapshots; opened without the writer lock.
pub trait Reader: Send {
    /// Where the warehouse is, safe to print (never a password).
    fn location(&self) -> String;
    /// The stream's snapshot, with at most `recent_runs` runs. `table` is the stream's table.
    fn snapshot(
        &mut self,
        stream: &str,
        table: &str,
        recent_runs: usize,
    ) -> Result<Snapshot, WarehouseError>;
}
