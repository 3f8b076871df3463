//! History mode (`sync.history`, SCD type 2): every version of a record the warehouse stored,
//! one row each in `<table>_history` with the interval it was current in. The rules live here,
//! once; each backend's [`HistoryDialect`] has the statements.
//!
//! The history writer is a [`Consumer`] of the write core, so versions are written in the
//! same transaction as the records and the checkpoint: a killed pass leaves none half-written
//! and the next pass writes them with the records. Every version is copied from the record
//! table itself after the batch's upsert, so the history holds exactly what the warehouse
//! stored:
//! - a record inserted or updated: versions of its id that the stored one overlaps end at its
//!   `modified_date` (the open one, or one a deletion closed later than that), then the stored
//!   version is written, open; one with the same `valid_from` (a restore after a deletion, a
//!   change the OMS made without moving `modified_date`) is reopened and takes the new values;
//! - a record a backfill marked deleted: its open version ends at `deleted_at`;
//! - unchanged (same content, or an older version): nothing.
//!
//! Turned on for a warehouse that already holds records, the next pass first seeds (the same
//! two statements over the whole table, in one transaction): one version per record, open
//! for a live one, ended at `deleted_at` for a deleted one. Turned off, nothing is written
//! and the table is kept; turned on again, the seed brings it up to date (the changes made
//! while it was off are not in it).

use super::write::{Change, Consumer, Dialect};
use crate::resource::{Column, Index, Spec};

/// The history table of a record table, and the columns it copies.
#[derive(Debug, Clone, Copy)]
pub struct HistoryTable {
    /// The record table (e.g. `customers`).
    pub source: &'static str,
    /// `<source>_history`.
    pub table: &'static str,
    /// The record's columns (its API fields, then `extra`), copied into each version.
    pub columns: &'static [Column],
    /// Its secondary indexes (for "as of" queries), as its migrations create them.
    pub indexes: &'static [Index],
}

impl HistoryTable {
    /// The record's columns other than `id`, as a list.
    pub(crate) fn value_columns(&self) -> Vec<&'static str> {
        self.columns.iter().skip(1).map(|c| c.name).collect()
    }

    /// Stores the record table's rows matching `filter` (a backend's `WHERE` for the ids) as
    /// versions: one per `(id, modified_date)`, its `valid_to` the row's `deleted_at`. The same
    /// statement on both backends; only the filter's binding differs.
    pub(crate) fn store_sql(&self, filter: &str) -> String {
        let cols = self.value_columns();
        let sets: Vec<String> = cols.iter().map(|c| format!("{c} = excluded.{c}")).collect();
        format!(
            "INSERT INTO {t} (id, valid_from, valid_to, {cols}) \
             SELECT id, modified_date, deleted_at, {cols} FROM {src} WHERE {filter} \
             ON CONFLICT (id, valid_from) DO UPDATE SET valid_to = excluded.valid_to, {sets}",
            t = self.table,
            src = self.source,
            cols = cols.join(", "),
            sets = sets.join(", "),
        )
    }
}

/// `customers_history`'s secondary indexes.
const CUSTOMERS_HISTORY_INDEXES: &[Index] = &[
    Index {
        name: "customers_history_valid_from",
        columns: &["valid_from"],
    },
    Index {
        name: "customers_history_valid_to",
        columns: &["valid_to"],
    },
];

/// The secondary indexes of `spec`'s table and of its history table, as `(table, index)`: a
/// backfill into an empty table drops both sets and builds them once at its end (a history is
/// empty when its table is).
pub fn secondary_indexes_of(spec: &Spec) -> Vec<(&'static str, &'static Index)> {
    let own = spec.indexes.iter().map(|i| (spec.table, i));
    let history = table_of(spec)
        .into_iter()
        .flat_map(|h| h.indexes.iter().map(move |i| (h.table, i)));
    own.chain(history).collect()
}

/// The history table of record table `table`, if it keeps one: customers does.
pub fn history_table_name(table: &str) -> Option<&'static str> {
    match table {
        "customers" => Some("customers_history"),
        _ => None,
    }
}

/// The history table of `spec`'s stream, if it keeps one.
pub fn table_of(spec: &Spec) -> Option<HistoryTable> {
    history_table_name(spec.table).map(|table| HistoryTable {
        source: spec.table,
        table,
        columns: spec.columns,
        indexes: CUSTOMERS_HISTORY_INDEXES,
    })
}

/// Which ids a statement applies to.
#[derive(Debug, Clone, Copy)]
pub enum Ids<'a> {
    These(&'a [i64]),
    /// Every record of the table (the seed).
    All,
}

/// A backend's history statements, run inside the transaction the write core opened.
pub trait HistoryDialect: Dialect {
    /// Ends, at the stored record's `modified_date`, the versions of `ids` that began before it
    /// and were not over by then (the open one, or one a deletion ended later).
    fn history_close_overlapped(
        &mut self,
        h: &HistoryTable,
        ids: Ids<'_>,
    ) -> Result<(), Self::Error>;
    /// Writes the stored record of each of `ids` as a version from its `modified_date` until
    /// its `deleted_at` (NULL for a live one), replacing the values and end of a version that
    /// began at the same instant. Returns the rows written.
    fn history_store(&mut self, h: &HistoryTable, ids: Ids<'_>) -> Result<u64, Self::Error>;
    /// Ends the open version of each of `ids` (just marked deleted) at its `deleted_at`.
    fn history_close_deleted(&mut self, h: &HistoryTable, ids: &[i64]) -> Result<(), Self::Error>;
    /// Whether history is on for `stream` (None: never turned on).
    fn history_enabled(&mut self, stream: &str) -> Result<Option<bool>, Self::Error>;
    /// Records that history is on or off for `stream` from `now`.
    fn set_history_enabled(&mut self, stream: &str, on: bool, now: &str)
    -> Result<(), Self::Error>;
    /// Adds `versions` to run `run`'s count of versions written.
    fn add_versions_to_run(&mut self, run: i64, versions: u64) -> Result<(), Self::Error>;
}

/// What turning history on or off at the start of a pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Switch {
    /// Already as asked (or the stream keeps no history).
    Unchanged,
    /// Turned on: the versions the seed wrote.
    Seeded(u64),
    /// Turned off: the table is kept, no longer written.
    Stopped,
}

/// Puts history for `spec` in the state asked for, inside the open transaction `tx`: turning it
/// on seeds it from the record table; the seed's versions count in run `run`.
pub fn switch<D: HistoryDialect>(
    tx: &mut D,
    spec: &Spec,
    on: bool,
    now: &str,
    run: i64,
) -> Result<Switch, D::Error> {
    let Some(h) = table_of(spec) else {
        return Ok(Switch::Unchanged);
    };
    let enabled = tx.history_enabled(spec.name)?.unwrap_or(false);
    match (enabled, on) {
        (false, true) => {
            tx.history_close_overlapped(&h, Ids::All)?;
            let n = tx.history_store(&h, Ids::All)?;
            tx.set_history_enabled(spec.name, true, now)?;
            tx.add_versions_to_run(run, n)?;
            Ok(Switch::Seeded(n))
        }
        (true, false) => {
            tx.set_history_enabled(spec.name, false, now)?;
            Ok(Switch::Stopped)
        }
        _ => Ok(Switch::Unchanged),
    }
}

/// The history writer: a [`Consumer`] of each batch's changes.
#[derive(Debug, Default)]
pub struct HistoryWriter {
    written: Vec<i64>,
    updated: Vec<i64>,
    deleted: Vec<i64>,
}

impl<D: HistoryDialect> Consumer<D> for HistoryWriter {
    fn batch(&mut self, tx: &mut D, spec: &Spec, changes: &[Change]) -> Result<u64, D::Error> {
        let Some(h) = table_of(spec) else {
            return Ok(0);
        };
        self.written.clear();
        self.updated.clear();
        self.deleted.clear();
        for c in changes {
            match *c {
                Change::Inserted { id } => self.written.push(id),
                Change::Updated { id, .. } => {
                    self.written.push(id);
                    self.updated.push(id);
                }
                Change::Deleted { id } => self.deleted.push(id),
                Change::Unchanged { .. } => {}
            }
        }
        // An id written twice in one batch: the table holds its last version, the one stored.
        for ids in [&mut self.written, &mut self.updated] {
            ids.sort_unstable();
            ids.dedup();
        }
        // A new id has no versions to end.
        if !self.updated.is_empty() {
            tx.history_close_overlapped(&h, Ids::These(&self.updated))?;
        }
        let n = if self.written.is_empty() {
            0
        } else {
            tx.history_store(&h, Ids::These(&self.written))?
        };
        if !self.deleted.is_empty() {
            tx.history_close_deleted(&h, &self.deleted)?;
        }
        Ok(n)
    }
}
