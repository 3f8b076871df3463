//! The warehouse: where synced records, checkpoints and run history live.
//!
//! The sync engine sees only [`Warehouse`]: read the checkpoints, apply a [`Batch`] (records,
//! quarantined records, deletions and the checkpoint advance, atomically), and record runs.
//! [`sqlite::SqliteWarehouse`] is the implementation today; another database is another impl.

mod any;
mod error;
pub mod history;
pub mod postgres;
mod retention;
pub mod shape;
mod snapshot;
pub mod sqlite;
pub mod write;

use std::cmp::Ordering;
use std::fmt;

use crate::resource::{BadRecord, Resource};

pub use any::{AnyWarehouse, describe, open_reader};
pub use error::{Location, WarehouseError};
pub use postgres::{PgConfig, PgReader, PgWarehouse};
pub use snapshot::{HistoryStatus, Reader, RunRow, Snapshot};
pub use sqlite::SqliteWarehouse;

pub use crate::resource::Spec;

/// Secondary indexes of the shipped record tables, as `(table, index, CREATE statement)`, the
/// same SQL for every backend, from the resources' declarations. A backfill into an EMPTY
/// table drops them and builds them once at its end (far cheaper than keeping them up to date
/// row by row); opening a warehouse builds any that are missing, so a backfill killed half-way
/// never leaves it without them. Each backend's tests check that the list matches its
/// migrations.
pub fn secondary_indexes() -> Vec<(&'static str, &'static str, String)> {
    crate::resource::ALL
        .iter()
        .flat_map(|spec| {
            spec.indexes
                .iter()
                .map(|i| (spec.table, i.name, i.create_sql(spec.table)))
        })
        .collect()
}

/// Incremental high-water mark on `(modified_date, id)`: what the warehouse claims to hold.
///
/// The mark claims only what was read and stored: never "every id" at its instant, because rows
/// of one bulk update can commit later with the same `modified_date` and higher ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mark {
    /// Nothing synced yet: start from the oldest row.
    Start,
    /// Every row with `modified_date` before `modified_date` is stored, and of the rows at
    /// exactly `modified_date`, those [`Confirmed`] says.
    At {
        modified_date: String,
        confirmed: Confirmed,
    },
}

/// Which rows at the mark's own instant are confirmed stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Confirmed {
    /// None: the next pass reads the instant again from its first row (`modified_date__gte`).
    Nothing,
    /// Those with `id <= ` this: the next pass asks for ids above it at the instant, then moves
    /// on to later instants.
    UpToId(i64),
}

impl Mark {
    pub fn at(modified_date: impl Into<String>, confirmed: Confirmed) -> Mark {
        Mark::At {
            modified_date: modified_date.into(),
            confirmed,
        }
    }

    /// The mark as stored in two nullable columns (`mark_modified_date`, `mark_after_id`).
    pub fn from_columns(modified_date: Option<String>, after_id: Option<i64>) -> Mark {
        match modified_date {
            None => Mark::Start,
            Some(md) => Mark::at(md, after_id.map_or(Confirmed::Nothing, Confirmed::UpToId)),
        }
    }

    /// The inverse of [`Mark::from_columns`].
    pub fn to_columns(&self) -> (Option<&str>, Option<i64>) {
        match self {
            Mark::Start => (None, None),
            Mark::At {
                modified_date,
                confirmed,
            } => (
                Some(modified_date),
                match confirmed {
                    Confirmed::Nothing => None,
                    Confirmed::UpToId(id) => Some(*id),
                },
            ),
        }
    }

    /// Whether the mark says the row version `(modified_date, id)` is already stored.
    pub fn covers(&self, modified_date: &str, id: i64) -> bool {
        match self {
            Mark::Start => false,
            Mark::At {
                modified_date: m,
                confirmed,
            } => {
                modified_date < m.as_str()
                    || (modified_date == m && matches!(confirmed, Confirmed::UpToId(a) if id <= *a))
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
                    confirmed: ai,
                },
                Mark::At {
                    modified_date: b,
                    confirmed: bi,
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

/// In words, as `status` and `sync_runs.mark_before`/`mark_after` show it.
impl fmt::Display for Mark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mark::Start => f.write_str("start"),
            Mark::At {
                modified_date,
                confirmed: Confirmed::Nothing,
            } => write!(
                f,
                "{modified_date} (rows at this instant are read again next pass)"
            ),
            Mark::At {
                modified_date,
                confirmed: Confirmed::UpToId(id),
            } => write!(
                f,
                "{modified_date} (ids up to {id} at this instant stored; higher ids read next pass)"
            ),
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

impl<T> Batch<T> {
    /// Records in the batch, stored or quarantined.
    pub fn rows(&self) -> usize {
        self.records.len() + self.bad.len()
    }
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
    /// History versions written (opened, reopened or corrected in place; 0 without history).
    pub versions: u64,
}

impl RowStats {
    pub fn add(&mut self, o: &RowStats) {
        self.fetched += o.fetched;
        self.inserted += o.inserted;
        self.updated += o.updated;
        self.unchanged += o.unchanged;
        self.deleted += o.deleted;
        self.quarantined += o.quarantined;
        self.versions += o.versions;
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

/// Storage for every stream. A stream is named by its resource's [`Spec`] (data); only
/// [`Warehouse::apply`] needs the resource's record type.
pub trait Warehouse: Send {
    fn mark(&mut self, stream: &Spec) -> Result<Mark, WarehouseError>;
    fn backfill_state(&mut self, stream: &Spec) -> Result<Option<BackfillState>, WarehouseError>;
    /// Records a new backfill (replacing none: the caller resumes an existing one instead).
    fn start_backfill(
        &mut self,
        stream: &Spec,
        state: &BackfillState,
    ) -> Result<(), WarehouseError>;
    /// Ends the backfill: forgets its state and moves the mark up to `mark` (never down).
    fn finish_backfill(&mut self, stream: &Spec, mark: Mark) -> Result<(), WarehouseError>;
    fn begin_run(
        &mut self,
        stream: &Spec,
        kind: RunKind,
        mark_before: &Mark,
    ) -> Result<i64, WarehouseError>;
    /// Applies `batches` (a page each) of resource `R`, in order, with their checkpoint
    /// advances, atomically: all in one transaction, each as it would be alone. Also adds
    /// their figures to `run`.
    fn apply<R: Resource>(
        &mut self,
        run: i64,
        batches: &[Batch<R::Record>],
    ) -> Result<RowStats, WarehouseError>;
    /// [`Warehouse::apply`], also giving each row's change to `recorder` inside the same
    /// transaction (what a consumer such as a history table builds on).
    fn apply_recording<R: Resource>(
        &mut self,
        run: i64,
        batches: &[Batch<R::Record>],
        recorder: &mut write::Recorder,
    ) -> Result<RowStats, WarehouseError>;
    fn finish_run(
        &mut self,
        stream: &Spec,
        run: i64,
        status: RunStatus,
        error: Option<&str>,
    ) -> Result<(), WarehouseError>;
    /// Forgets the runs of every stream that started before `older_than` (a canonical
    /// timestamp), keeping the ones `status` and the scheduler read (see
    /// `retention::prune_statement`). Returns how many were deleted.
    fn prune_runs(&mut self, older_than: &str) -> Result<u64, WarehouseError>;
    /// Turns history mode on or off for `stream` ([`history`]), in one transaction: turning it
    /// on seeds it from the stream's table (the seed's versions count in run `run`). From then
    /// on [`Warehouse::apply`] writes the stream's versions while it is on.
    fn set_history(
        &mut self,
        stream: &Spec,
        on: bool,
        run: i64,
    ) -> Result<history::Switch, WarehouseError>;
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
        let none = Mark::at(t, Confirmed::Nothing);
        assert!(none.covers(before, 99) && !none.covers(t, 1) && !none.covers(after, 1));
        let some = Mark::at(t, Confirmed::UpToId(5));
        assert!(some.covers(t, 5) && !some.covers(t, 6) && !some.covers(after, 1));
        assert!(
            Mark::at(t, Confirmed::Nothing) < Mark::at(t, Confirmed::UpToId(1))
                && Mark::at(t, Confirmed::UpToId(1)) < Mark::at(t, Confirmed::UpToId(2))
                && Mark::at(t, Confirmed::UpToId(i64::MAX)) < Mark::at(after, Confirmed::Nothing)
                && Mark::Start < Mark::at(before, Confirmed::Nothing)
        );
    }

    #[test]
    fn columns_round_trip_and_read_in_words() {
        for m in [
            Mark::Start,
            Mark::at("2024-01-01T00:00:00.000000Z", Confirmed::Nothing),
            Mark::at("2024-01-01T00:00:00.000000Z", Confirmed::UpToId(42)),
        ] {
            let (md, id) = m.to_columns();
            assert_eq!(Mark::from_columns(md.map(str::to_owned), id), m);
        }
        assert_eq!(
            Mark::at("2024-01-01T00:00:00.000000Z", Confirmed::UpToId(42)).to_string(),
            "2024-01-01T00:00:00.000000Z (ids up to 42 at this instant stored; higher ids read next pass)"
        );
    }
}
