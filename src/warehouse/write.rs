//! The write algorithm, once for every backend: what applying a [`Batch`] means.
//!
//! Inside the transaction the backend opened, for each batch in order:
//! 1. the checkpoint first: an incremental mark moves forward (never back); a backfill page
//!    marks deleted the rows of its id interval that it did not list (a range's last page, up
//!    to the range's own upper bound), then moves its range's cursor or ends the range;
//! 2. the records: upserted (never older, never a rewrite of the same content), each with its
//!    outcome; a backfill page whose id interval holds no row at all (live or deleted), with
//!    every record inside it and no id twice, can only insert: the backend may load it by its
//!    fastest path ([`Dialect::insert_new`]), each record `Inserted`; a record stored
//!    releases its quarantined versions that are not newer;
//! 3. the bad records: quarantined (never dropped);
//! 4. the change events of the batch go to the consumer, in the same transaction.
//!
//! Then the run's counters grow by the batches' figures. A backend is a [`Dialect`]: the
//! statements of each step, nothing of their order or meaning.

use std::collections::HashMap;

use crate::resource::{BadRecord, Keyed, Resource, Spec};
use crate::warehouse::{Advance, Batch, Mark, RowStats};

/// What storing one record did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Inserted,
    Updated,
    /// Older than the stored version, or the same content: nothing written.
    Unchanged,
}

/// What happened to one row, as a consumer of a batch sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Inserted {
        id: i64,
    },
    /// `previous` is the `modified_date` of the version it replaced (canonical text), when the
    /// consumer asked for it ([`Consumer::wants_previous`]).
    Updated {
        id: i64,
        previous: Option<String>,
    },
    Unchanged {
        id: i64,
    },
    /// Marked deleted by a backfill: the API no longer lists it.
    Deleted {
        id: i64,
    },
}

/// One backend's statements for each step, run inside the transaction it opened.
pub trait Dialect {
    type Error;

    /// Moves `stream`'s mark to `mark` when that is further on.
    fn advance_mark(&mut self, stream: &str, mark: &Mark) -> Result<(), Self::Error>;
    /// The upper bound of a backfill range (`None`: unbounded).
    fn range_hi(&mut self, stream: &str, range_no: i64) -> Result<Option<i64>, Self::Error>;
    /// Marks deleted the live rows of `spec`'s table with id in `(from, to]` that are not in
    /// `listed`; pushes their ids onto `deleted`.
    fn mark_deleted(
        &mut self,
        spec: &Spec,
        from: i64,
        to: i64,
        listed: &[i64],
        now: &str,
        deleted: &mut Vec<i64>,
    ) -> Result<(), Self::Error>;
    /// Moves a range's cursor to `to`, or marks the range done (`None`).
    fn move_range(
        &mut self,
        stream: &str,
        range_no: i64,
        to: Option<i64>,
    ) -> Result<(), Self::Error>;
    /// Stores `records` in order (a later version of an id after an earlier one), pushing one
    /// outcome per record onto `outcomes`.
    fn upsert<R: Resource>(
        &mut self,
        records: &[R::Record],
        now: &str,
        outcomes: &mut Vec<Outcome>,
    ) -> Result<(), Self::Error>;
    /// Whether no row of `spec`'s table, live or deleted, has an id in `(from, to]`. A backend
    /// without a faster path for new rows says `false` (the default): it is never wrong.
    fn interval_empty(&mut self, _spec: &Spec, _from: i64, _to: i64) -> Result<bool, Self::Error> {
        Ok(false)
    }
    /// Stores `records`, which the caller proved new: ids in `interval` `(from, to]`, where no
    /// row is stored, and no id twice. The backend may hold them until [`Dialect::flush`] or
    /// its next statement on the table. The default is [`Dialect::upsert`].
    fn insert_new<R: Resource>(
        &mut self,
        records: &[R::Record],
        interval: (i64, i64),
        now: &str,
    ) -> Result<(), Self::Error> {
        let _ = interval;
        self.upsert::<R>(records, now, &mut Vec::with_capacity(records.len()))
    }
    /// Writes whatever records the backend still holds, so every statement after it sees
    /// them: before a consumer sees a batch, and at the end of the batches.
    fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
    /// The stored `modified_date` of each id of `ids` that has a row (`None` otherwise).
    fn stored_versions(
        &mut self,
        spec: &Spec,
        ids: &[i64],
    ) -> Result<Vec<Option<String>>, Self::Error>;
    /// Deletes the quarantined versions of `records` that are not newer than the record;
    /// returns how many.
    fn unquarantine<R: Resource>(
        &mut self,
        stream: &str,
        records: &[R::Record],
    ) -> Result<u64, Self::Error>;
    fn quarantine(&mut self, stream: &str, bad: &BadRecord, now: &str) -> Result<(), Self::Error>;
    fn quarantine_count(&mut self) -> Result<i64, Self::Error>;
    /// Adds `pages` and `stats` to run `run`'s counters.
    fn add_to_run(&mut self, run: i64, pages: u64, stats: &RowStats) -> Result<(), Self::Error>;
}

/// Reacts to each batch's changes inside its transaction (e.g. to keep a history table).
pub trait Consumer<D: Dialect> {
    /// Whether [`Change::Updated`] must carry the replaced version's `modified_date` (one
    /// extra read per batch).
    fn wants_previous(&self) -> bool {
        false
    }
    /// Returns the rows it wrote (history versions), counted in [`RowStats::versions`].
    fn batch(&mut self, tx: &mut D, spec: &Spec, changes: &[Change]) -> Result<u64, D::Error>;
}

/// A consumer that keeps every change, in order: what a caller inspects after the commit.
#[derive(Debug, Default)]
pub struct Recorder {
    pub changes: Vec<Change>,
    /// Ask for the replaced versions' `modified_date`.
    pub previous: bool,
}

impl<D: Dialect> Consumer<D> for Recorder {
    fn wants_previous(&self) -> bool {
        self.previous
    }
    fn batch(&mut self, _: &mut D, _: &Spec, changes: &[Change]) -> Result<u64, D::Error> {
        self.changes.extend_from_slice(changes);
        Ok(0)
    }
}

/// Applies `batches` in order inside the open transaction `tx`, each as it would be alone
/// (deletion marking sees the rows of the batches before it; a record quarantined by one and
/// stored by a later one leaves the quarantine), and adds their figures to `run`. `quarantined`
/// is the quarantine's size before; returns the figures and its new size when it may have
/// changed.
pub fn apply_batches<R: Resource, D: Dialect>(
    tx: &mut D,
    quarantined: i64,
    run: i64,
    batches: &[Batch<R::Record>],
    now: &str,
    mut consumer: Option<&mut dyn Consumer<D>>,
) -> Result<(RowStats, Option<i64>), D::Error> {
    let spec = R::SPEC;
    let mut total = RowStats::default();
    let mut count: Option<i64> = None;
    let mut outcomes = Vec::new();
    let mut deleted = Vec::new();
    let mut changes = Vec::new();
    for batch in batches {
        let had_quarantine = count.unwrap_or(quarantined) > 0;
        let mut stats = RowStats {
            fetched: batch.rows() as u64,
            ..RowStats::default()
        };
        deleted.clear();
        // The id interval of a page whose records are all new (see step 2 in the module doc).
        let mut fresh = None;
        // 1. The checkpoint first: deletion marking then sees only the rows stored before.
        match &batch.advance {
            Advance::Mark(mark) => tx.advance_mark(spec.name, mark)?,
            Advance::Backfill { range_no, from, to } => {
                // The range's own upper bound is only needed by its last page.
                let upper = match to {
                    Some(t) => Some(*t),
                    None => tx.range_hi(spec.name, *range_no)?,
                };
                let upper = upper.unwrap_or(i64::MAX);
                let inside = batch.records.windows(2).all(|w| w[0].id() < w[1].id())
                    && batch
                        .records
                        .iter()
                        .all(|r| r.id() > *from && r.id() <= upper);
                // An empty interval has nothing to mark deleted either.
                if !batch.records.is_empty() && inside && tx.interval_empty(spec, *from, upper)? {
                    fresh = Some((*from, upper));
                } else {
                    let listed: Vec<i64> = batch
                        .records
                        .iter()
                        .map(Keyed::id)
                        .chain(batch.bad.iter().filter_map(|b| b.id))
                        .collect();
                    tx.mark_deleted(spec, *from, upper, &listed, now, &mut deleted)?;
                }
                // In id order, whatever order the backend found them in.
                deleted.sort_unstable();
                stats.deleted = deleted.len() as u64;
                tx.move_range(spec.name, *range_no, *to)?;
            }
        }
        // 2. The records, then what they release from quarantine.
        let wants_previous = consumer.as_ref().is_some_and(|c| c.wants_previous());
        let previous = if wants_previous && fresh.is_none() && !batch.records.is_empty() {
            let ids: Vec<i64> = batch.records.iter().map(Keyed::id).collect();
            tx.stored_versions(spec, &ids)?
        } else {
            vec![]
        };
        outcomes.clear();
        let mut released = 0;
        if let Some(interval) = fresh {
            tx.insert_new::<R>(&batch.records, interval, now)?;
            outcomes.resize(batch.records.len(), Outcome::Inserted);
        } else if !batch.records.is_empty() {
            tx.upsert::<R>(&batch.records, now, &mut outcomes)?;
        }
        if !batch.records.is_empty() {
            for o in &outcomes {
                match o {
                    Outcome::Inserted => stats.inserted += 1,
                    Outcome::Updated => stats.updated += 1,
                    Outcome::Unchanged => stats.unchanged += 1,
                }
            }
            if had_quarantine {
                released = tx.unquarantine::<R>(spec.name, &batch.records)?;
            }
        }
        // 3. The bad records.
        for bad in &batch.bad {
            tx.quarantine(spec.name, bad, now)?;
            stats.quarantined += 1;
        }
        if !batch.bad.is_empty() || released > 0 {
            count = Some(tx.quarantine_count()?);
        }
        // 4. The batch's changes, in the same transaction.
        if let Some(c) = consumer.as_deref_mut() {
            changes.clear();
            changes.extend(deleted.iter().map(|&id| Change::Deleted { id }));
            // A second version of an id in the batch replaced the first, not the stored one.
            let mut written: HashMap<i64, &str> = HashMap::new();
            for (i, (r, o)) in batch.records.iter().zip(&outcomes).enumerate() {
                let id = Keyed::id(r);
                changes.push(match o {
                    Outcome::Inserted => Change::Inserted { id },
                    Outcome::Updated => Change::Updated {
                        id,
                        previous: match written.get(&id) {
                            Some(md) => wants_previous.then(|| md.to_string()),
                            None => previous.get(i).cloned().flatten(),
                        },
                    },
                    Outcome::Unchanged => Change::Unchanged { id },
                });
                if *o != Outcome::Unchanged {
                    written.insert(id, r.modified_date());
                }
            }
            tx.flush()?;
            stats.versions += c.batch(tx, spec, &changes)?;
        }
        total.add(&stats);
    }
    tx.flush()?;
    tx.add_to_run(run, batches.len() as u64, &total)?;
    Ok((total, count))
}
