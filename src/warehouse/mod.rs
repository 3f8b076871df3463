//! The warehouse: where synced records, checkpoints and run history live.
//!
//! The sync engine sees only [`Warehouse`]: read the checkpoints, apply a [`Batch`] (records,
//! quarantined records, deletions and the checkpoint advance, atomically), and record runs.
//! [`sqlite::SqliteWarehouse`] is the implementation today; another database is another impl.

pub mod sqlite;

use std::cmp::Ordering;
use std::fmt;

use crate::resource::{BadRecord, Resource};

pub use sqlite::{SqliteWarehouse, WarehouseError};

/// Incremental high-water mark on `(modified_date, id)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mark {
    /// Nothing synced yet: start from the oldest row.
    Start,
    /// Every row with `modified_date < modified_date` is stored, and of the rows at exactly
    /// `modified_date`, those with `id <= after_id` (`None`: none confirmed yet; `i64::MAX`: all).
    At {
        modified_date: String,
        after_id: Option<i64>,
    },
}

impl Mark {
    pub fn at(modified_date: impl Into<String>, after_id: Option<i64>) -> Mark {
        Mark::At {
            modified_date: modified_date.into(),
            after_id,
        }
    }
    /// Whether the mark says the row version `(modified_date, id)` is already stored.
    pub fn covers(&self, modified_date: &str, id: i64) -> bool {
        match self {
            Mark::Start => false,
            Mark::At {
                modified_date: m,
                after_id,
            } => {
                modified_date < m.as_str()
                    || (modified_date == m && after_id.is_some_and(|a| id <= a))
            }
        }
    }

    pub fn modified_date(&self) -> Option<&str> {
        match self {
            Mark::Start => None,
            Mark::At { modified_date, .. } => Some(modified_date),
        }
    }
}

impl Ord for Mark {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Mark::Start, Mark::Start) => Ordering::Equal,
            (Mark::Start, _) => Ordering::Less,
            (_, Mark::Start) => Ordering::Greater,
            (
                Mark::At {
                    modified_date: a,
                    after_id: ai,
                },
                Mark::At {
                    modified_date: b,
                    after_id: bi,
                },
            ) => a.cmp(b).then(ai.cmp(bi)),
        }
    }
}

impl PartialOrd for Mark {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Mark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mark::Start => f.write_str("start"),
            Mark::At {
                modified_date,
                after_id: None,
            } => write!(f, "{modified_date}"),
            Mark::At {
                modified_date,
                after_id: Some(i64::MAX),
            } => write!(f, "{modified_date} (all ids)"),
            Mark::At {
                modified_date,
                after_id: Some(id),
            } => write!(f, "{modified_date} id>{id}"),
        }
    }
}

/// One id range of a backfill: ids in `(lo, cursor]` are done; `hi` None means unbounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackfillRange {
    pub range_no: i64,
    pub lo: i64,
    pub hi: Option<i64>,
    pub cursor: i64,
    pub done: bool,
}

/// A backfill in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackfillState {
    pub run_id: Option<i64>,
    pub started_at: String,
    /// The newest `modified_date` the API had before the backfill began: the incremental mark
    /// the backfill leaves, so nothing modified while it ran can be missed.
    pub high_water_date: Option<String>,
    pub ranges: Vec<BackfillRange>,
}

/// How a batch moves the checkpoint; applied in the same transaction as the records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Advance {
    /// Incremental: the mark moves forward to this (never backward).
    Mark(Mark),
    /// Backfill page of range `range_no`: ids in `(from, to]` not in this batch are gone from the
    /// API (marked deleted), and the range's cursor moves to `to`. `to` None: the range is
    /// exhausted, everything above `from` up to its `hi` that the batch did not carry is gone.
    Backfill {
        range_no: i64,
        from: i64,
        to: Option<i64>,
    },
}

/// Records of one or more pages with the checkpoint they reach.
#[derive(Debug)]
pub struct Batch<T> {
    pub records: Vec<T>,
    pub bad: Vec<BadRecord>,
    pub advance: Advance,
}

/// What applying batches did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RowStats {
    pub fetched: u64,
    pub inserted: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub deleted: u64,
    pub quarantined: u64,
}

impl RowStats {
    pub fn add(&mut self, o: &RowStats) {
        self.fetched += o.fetched;
        self.inserted += o.inserted;
        self.updated += o.updated;
        self.unchanged += o.unchanged;
        self.deleted += o.deleted;
        self.quarantined += o.quarantined;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunKind {
    Incremental,
    Backfill,
}

impl RunKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Incremental => "incremental",
            RunKind::Backfill => "backfill",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    Succeeded,
    Failed,
    Cancelled,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }
}

/// Storage for one resource's stream.
pub trait Warehouse<R: Resource>: Send {
    type Error: std::error::Error + Send + Sync + 'static;

    fn mark(&mut self) -> Result<Mark, Self::Error>;
    fn backfill_state(&mut self) -> Result<Option<BackfillState>, Self::Error>;
    /// Records a new backfill (replacing none: the caller resumes an existing one instead).
    fn start_backfill(&mut self, state: &BackfillState) -> Result<(), Self::Error>;
    /// Ends the backfill: forgets its state and moves the mark up to `mark` (never down).
    fn finish_backfill(&mut self, mark: Mark) -> Result<(), Self::Error>;
    fn begin_run(&mut self, kind: RunKind, mark_before: &Mark) -> Result<i64, Self::Error>;
    /// Applies a batch and its checkpoint advance atomically; also adds its figures to `run`.
    fn apply(
        &mut self,
        run: i64,
        batch: Batch<R::Record>,
        pages: u64,
    ) -> Result<RowStats, Self::Error>;
    fn finish_run(
        &mut self,
        run: i64,
        status: RunStatus,
        error: Option<&str>,
    ) -> Result<(), Self::Error>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covers_follows_the_mark_semantics() {
        let t = "2024-01-01T00:00:00.000000Z";
        let before = "2023-12-31T23:59:59.999999Z";
        let after = "2024-01-01T00:00:00.000001Z";
        assert!(!Mark::Start.covers(before, 1));
        let none = Mark::at(t, None);
        assert!(none.covers(before, 99) && !none.covers(t, 1) && !none.covers(after, 1));
        let some = Mark::at(t, Some(5));
        assert!(some.covers(t, 5) && !some.covers(t, 6));
        assert!(Mark::at(t, Some(i64::MAX)).covers(t, i64::MAX));
        assert!(Mark::at(t, None) < Mark::at(t, Some(1)) && Mark::Start < Mark::at(before, None));
    }
}
