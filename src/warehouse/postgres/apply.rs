//! The PostgreSQL dialect of the write core ([`crate::warehouse::write`]): a page proved new
//! by binary COPY straight into the table ([`load`](super::load)); otherwise the records'
//! upsert as ONE statement over arrays (`INSERT … SELECT FROM unnest(…) ON CONFLICT … WHERE`,
//! or binary COPY into staging then a merge), deletion marking as one `UPDATE`, the
//! quarantine's release as one `DELETE … USING unnest`.

use std::collections::HashMap;

use postgres::types::ToSql;
use postgres::{Client, Transaction};

use super::state::write_mark_if_greater;
use super::{copy, load};
use chrono::{DateTime, Utc};

use crate::resource::{BadRecord, Cell, Column, ColumnType, Keyed, Resource, Row, Spec};
use crate::timefmt;
use crate::warehouse::write::{self, Consumer, Dialect, Outcome};
use crate::warehouse::{Batch, Mark, RowStats};

/// The PostgreSQL type of a column as sent (arrays of these) and as stored.
fn types(ty: ColumnType) -> (&'static str, &'static str) {
    match ty {
        ColumnType::BigInt => ("bigint", "bigint"),
        ColumnType::Text => ("text", "text"),
        // Sent as canonical text, cast by the server: exact to the microsecond.
        ColumnType::Timestamp => ("text", "timestamptz"),
        ColumnType::Json => ("text", "jsonb"),
        ColumnType::Bool => ("boolean", "boolean"),
    }
}

/// The upsert of `unnest`ed arrays, one per column, then `$n+1` = now. Returns one row per
/// row written, its id and `true` when inserted; rows not returned were unchanged (or older).
pub fn upsert_sql(table: &str, columns: &[Column]) -> String {
    let names: Vec<&str> = columns.iter().map(|c| c.name).collect();
    let arrays: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| format!("${}::{}[]", i + 1, types(c.ty).0))
        .collect();
    let select: Vec<String> = columns
        .iter()
        .map(|c| match types(c.ty) {
            (sent, stored) if sent != stored => format!("s.{}::{stored}", c.name),
            _ => format!("s.{}", c.name),
        })
        .collect();
    let sets: Vec<String> = names[1..]
        .iter()
        .map(|c| format!("{c} = excluded.{c}"))
        .collect();
    let differs: Vec<String> = names[1..]
        .iter()
        .filter(|c| **c != "modified_date")
        .map(|c| format!("excluded.{c} IS DISTINCT FROM t.{c}"))
        .collect();
    let now = columns.len() + 1;
    format!(
        "INSERT INTO {table} AS t ({cols}, deleted_at, synced_at, first_synced_at) \
         SELECT {select}, NULL, ${now}::text::timestamptz, ${now}::text::timestamptz \
         FROM unnest({arrays}) AS s({cols}) \
         ON CONFLICT (id) DO UPDATE SET {sets}, deleted_at = NULL, synced_at = excluded.synced_at \
         WHERE excluded.modified_date > t.modified_date \
            OR (excluded.modified_date = t.modified_date \
                AND (t.deleted_at IS NOT NULL OR {differs})) \
         RETURNING t.id, (xmax = 0)",
        cols = names.join(", "),
        select = select.join(", "),
        arrays = arrays.join(", "),
        sets = sets.join(", "),
        differs = differs.join(" OR "),
    )
}

/// Column arrays of `records`, in `T::COLUMNS` order.
fn column_arrays<'a, T: Row>(records: &[&'a T]) -> Vec<Box<dyn ToSql + Sync + 'a>> {
    (0..T::COLUMNS.len())
        .map(|i| -> Box<dyn ToSql + Sync + 'a> {
            match T::COLUMNS[i].ty {
                ColumnType::BigInt => Box::new(
                    records
                        .iter()
                        .map(|r| match r.cell(i) {
                            Cell::Int(v) => v,
                            _ => None,
                        })
                        .collect::<Vec<Option<i64>>>(),
                ),
                ColumnType::Bool => Box::new(
                    records
                        .iter()
                        .map(|r| match r.cell(i) {
                            Cell::Bool(v) => v,
                            _ => None,
                        })
                        .collect::<Vec<Option<bool>>>(),
                ),
                _ => Box::new(
                    records
                        .iter()
                        .map(|r| match r.cell(i) {
                            Cell::Text(v) => v,
                            _ => None,
                        })
                        .collect::<Vec<Option<&'a str>>>(),
                ),
            }
        })
        .collect()
}

/// Splits records into rounds so no id appears twice in one statement (ON CONFLICT cannot
/// touch a row twice); round k holds each id's k-th version, in page order, as SQLite applies
/// them one by one. Nearly always one round. Also gives each record's round.
fn rounds<T: Keyed>(records: &[T]) -> (Vec<Vec<&T>>, Vec<usize>) {
    let mut seen: HashMap<i64, usize> = HashMap::with_capacity(records.len());
    let mut out: Vec<Vec<&T>> = vec![];
    let mut round_of = Vec::with_capacity(records.len());
    for r in records {
        let k = seen.entry(r.id()).or_insert(0);
        if out.len() <= *k {
            out.push(Vec::with_capacity(if *k == 0 { records.len() } else { 0 }));
        }
        out[*k].push(r);
        round_of.push(*k);
        *k += 1;
    }
    (out, round_of)
}

fn quarantine(
    tx: &mut Transaction<'_>,
    stream: &str,
    bad: &BadRecord,
    now: &str,
) -> Result<u64, postgres::Error> {
    match bad.id {
        Some(id) => tx.execute(
            "INSERT INTO quarantine (stream, record_id, modified_date, raw, error, first_seen_at, last_seen_at)
             VALUES ($1, $2, $3::text::timestamptz, $4, $5, $6::text::timestamptz, $6::text::timestamptz)
             ON CONFLICT (stream, record_id) WHERE record_id IS NOT NULL DO UPDATE SET
                 modified_date = excluded.modified_date, raw = excluded.raw, error = excluded.error,
                 last_seen_at = excluded.last_seen_at, times_seen = quarantine.times_seen + 1",
            &[&stream, &id, &bad.modified_date, &bad.raw, &bad.error, &now],
        ),
        None => tx.execute(
            "INSERT INTO quarantine (stream, record_id, modified_date, raw, error, first_seen_at, last_seen_at)
             VALUES ($1, NULL, $2::text::timestamptz, $3, $4, $5::text::timestamptz, $5::text::timestamptz)
             ON CONFLICT (stream, md5(raw)) WHERE record_id IS NULL DO UPDATE SET
                 last_seen_at = excluded.last_seen_at, times_seen = quarantine.times_seen + 1",
            &[&stream, &bad.modified_date, &bad.raw, &bad.error, &now],
        ),
    }
}

/// How a batch's records reach the table (measured: see docs/postgresql.md, "Bulk path").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BulkPath {
    /// One `INSERT … SELECT FROM unnest($1::bigint[], …) ON CONFLICT … WHERE`.
    #[default]
    Unnest,
    /// Binary COPY into an UNLOGGED staging table, then one `INSERT … SELECT … ON CONFLICT`.
    Copy,
}

/// The PostgreSQL dialect of the write core, on an open transaction.
pub struct PgTx<'a, 'b> {
    pub(super) tx: &'a mut Transaction<'b>,
    pub(super) bulk: BulkPath,
    /// New pages' rows, sent in one COPY straight into the table before anything else
    /// touches it.
    pending: load::Pending,
    /// Pages loaded by COPY straight into the table.
    copied: u64,
}

impl<'a, 'b> PgTx<'a, 'b> {
    /// The dialect on `tx`, holding no new rows yet.
    pub(super) fn new(tx: &'a mut Transaction<'b>, bulk: BulkPath) -> Self {
        PgTx {
            tx,
            bulk,
            pending: load::Pending::default(),
            copied: 0,
        }
    }
}

impl PgTx<'_, '_> {
    /// Sends the held new rows (see [`load::Pending`]).
    fn send_pending(&mut self) -> Result<(), postgres::Error> {
        if !self.pending.is_empty() {
            self.pending.send(&mut *self.tx)?;
            self.copied += std::mem::take(&mut self.pending.pages);
        }
        Ok(())
    }
}

impl Dialect for PgTx<'_, '_> {
    type Error = postgres::Error;

    fn advance_mark(&mut self, stream: &str, mark: &Mark) -> Result<(), postgres::Error> {
        write_mark_if_greater(&mut *self.tx, stream, mark)
    }

    fn range_hi(&mut self, stream: &str, range_no: i64) -> Result<Option<i64>, postgres::Error> {
        self.tx
            .query_one(
                "SELECT hi FROM backfill_ranges WHERE stream = $1 AND range_no = $2",
                &[&stream, &range_no],
            )?
            .try_get(0)
    }

    fn mark_deleted(
        &mut self,
        spec: &Spec,
        from: i64,
        to: i64,
        listed: &[i64],
        now: &str,
        deleted: &mut Vec<i64>,
    ) -> Result<(), postgres::Error> {
        self.send_pending()?;
        let rows = self.tx.query(
            &format!(
                "UPDATE {} SET deleted_at = $3::text::timestamptz, synced_at = $3::text::timestamptz
                 WHERE id > $1 AND id <= $2 AND deleted_at IS NULL AND id <> ALL($4::bigint[])
                 RETURNING id",
                spec.table
            ),
            &[&from, &to, &now, &listed],
        )?;
        for r in rows {
            deleted.push(r.try_get(0)?);
        }
        Ok(())
    }

    fn move_range(
        &mut self,
        stream: &str,
        range_no: i64,
        to: Option<i64>,
    ) -> Result<(), postgres::Error> {
        match to {
            Some(t) => self.tx.execute(
                "UPDATE backfill_ranges SET cursor_id = $3 WHERE stream = $1 AND range_no = $2",
                &[&stream, &range_no, &t],
            )?,
            None => self.tx.execute(
                "UPDATE backfill_ranges SET done = true WHERE stream = $1 AND range_no = $2",
                &[&stream, &range_no],
            )?,
        };
        Ok(())
    }

    fn upsert<R: Resource>(
        &mut self,
        records: &[R::Record],
        now: &str,
        outcomes: &mut Vec<Outcome>,
    ) -> Result<(), postgres::Error> {
        self.send_pending()?;
        let columns = <R::Record as Row>::COLUMNS;
        let sql = upsert_sql(R::TABLE, columns);
        let merge = copy::merge_sql(R::TABLE, columns, &sql);
        if self.bulk == BulkPath::Copy {
            self.tx
                .batch_execute(&copy::create_staging_sql(R::TABLE, columns))?;
        }
        let (rounds, round_of) = rounds(records);
        // Per round, the ids written and whether each was inserted.
        let mut written: Vec<HashMap<i64, bool>> = Vec::with_capacity(rounds.len());
        for round in &rounds {
            let rows = match self.bulk {
                BulkPath::Unnest => {
                    let arrays = column_arrays(round);
                    let mut params: Vec<&(dyn ToSql + Sync)> =
                        arrays.iter().map(|b| &**b).collect();
                    params.push(&now);
                    self.tx.query(&sql, &params)?
                }
                BulkPath::Copy => copy::copy_round(&mut *self.tx, R::TABLE, &merge, round, now)?,
            };
            let mut ids = HashMap::with_capacity(rows.len());
            for r in rows {
                ids.insert(r.try_get::<_, i64>(0)?, r.try_get::<_, bool>(1)?);
            }
            written.push(ids);
        }
        outcomes.extend(
            records
                .iter()
                .zip(round_of)
                .map(|(r, k)| match written[k].get(&r.id()) {
                    Some(true) => Outcome::Inserted,
                    Some(false) => Outcome::Updated,
                    None => Outcome::Unchanged,
                }),
        );
        Ok(())
    }

    fn interval_empty(&mut self, spec: &Spec, from: i64, to: i64) -> Result<bool, postgres::Error> {
        if self.pending.overlaps(from, to) {
            self.send_pending()?;
        }
        self.tx
            .query_one(
                &format!(
                    "SELECT NOT EXISTS (SELECT 1 FROM {} WHERE id > $1 AND id <= $2)",
                    spec.table
                ),
                &[&from, &to],
            )?
            .try_get(0)
    }

    fn insert_new<R: Resource>(
        &mut self,
        records: &[R::Record],
        interval: (i64, i64),
        now: &str,
    ) -> Result<(), postgres::Error> {
        if !self.pending.add(R::TABLE, records, interval, now) {
            // An instant it cannot read: the upsert sends it as text, for the server to judge.
            return self.upsert::<R>(records, now, &mut Vec::with_capacity(records.len()));
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), postgres::Error> {
        self.send_pending()
    }

    fn stored_versions(
        &mut self,
        spec: &Spec,
        ids: &[i64],
    ) -> Result<Vec<Option<String>>, postgres::Error> {
        self.send_pending()?;
        let mut found: HashMap<i64, String> = HashMap::with_capacity(ids.len());
        for r in self.tx.query(
            &format!(
                "SELECT id, modified_date FROM {} WHERE id = ANY($1::bigint[])",
                spec.table
            ),
            &[&ids],
        )? {
            let md: DateTime<Utc> = r.try_get(1)?;
            found.insert(r.try_get(0)?, timefmt::canonical(&md));
        }
        Ok(ids.iter().map(|id| found.get(id).cloned()).collect())
    }

    fn unquarantine<R: Resource>(
        &mut self,
        stream: &str,
        records: &[R::Record],
    ) -> Result<u64, postgres::Error> {
        let ids: Vec<i64> = records.iter().map(|r| r.id()).collect();
        let mds: Vec<&str> = records.iter().map(|r| r.modified_date()).collect();
        self.tx.execute(
            "DELETE FROM quarantine q USING unnest($2::bigint[], $3::text[]) AS r(id, md)
             WHERE q.stream = $1 AND q.record_id = r.id
               AND (q.modified_date IS NULL OR q.modified_date <= r.md::timestamptz)",
            &[&stream, &ids, &mds],
        )
    }

    fn quarantine(
        &mut self,
        stream: &str,
        bad: &BadRecord,
        now: &str,
    ) -> Result<(), postgres::Error> {
        quarantine(&mut *self.tx, stream, bad, now).map(drop)
    }

    fn quarantine_count(&mut self) -> Result<i64, postgres::Error> {
        self.tx
            .query_one("SELECT count(*) FROM quarantine", &[])?
            .try_get(0)
    }

    fn add_to_run(
        &mut self,
        run: i64,
        pages: u64,
        stats: &RowStats,
    ) -> Result<(), postgres::Error> {
        let p: [&(dyn ToSql + Sync); 9] = [
            &run,
            &(pages as i64),
            &(stats.fetched as i64),
            &(stats.inserted as i64),
            &(stats.updated as i64),
            &(stats.unchanged as i64),
            &(stats.deleted as i64),
            &(stats.quarantined as i64),
            &(stats.versions as i64),
        ];
        self.tx.execute(
            "UPDATE sync_runs SET pages = pages + $2, rows_fetched = rows_fetched + $3,
                     rows_inserted = rows_inserted + $4, rows_updated = rows_updated + $5,
                     rows_unchanged = rows_unchanged + $6, rows_deleted = rows_deleted + $7,
                     rows_quarantined = rows_quarantined + $8,
                     versions_written = versions_written + $9
                 WHERE id = $1",
            &p,
        )?;
        Ok(())
    }
}

/// Applies `batches` in one transaction with the write core ([`write::apply_batches`]);
/// `quarantined` is the warehouse's count of quarantined rows, kept current; `copied` counts
/// the pages loaded by COPY straight into the table (once committed).
pub(super) fn apply_batches<R: Resource>(
    client: &mut Client,
    bulk: BulkPath,
    quarantined: &mut i64,
    copied: &mut u64,
    run: i64,
    batches: &[Batch<R::Record>],
    consumer: Option<&mut (dyn for<'a, 'b> Consumer<PgTx<'a, 'b>> + Send)>,
) -> Result<RowStats, postgres::Error> {
    let now = timefmt::now_canonical();
    let mut tx = client.transaction()?;
    let mut d = PgTx {
        tx: &mut tx,
        bulk,
        pending: load::Pending::default(),
        copied: 0,
    };
    let consumer = consumer.map(|c| c as &mut dyn Consumer<PgTx<'_, '_>>);
    let (stats, count) =
        write::apply_batches::<R, _>(&mut d, *quarantined, run, batches, &now, consumer)?;
    let pages = d.copied;
    tx.commit()?;
    *copied += pages;
    if let Some(q) = count {
        *quarantined = q;
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::{Customer, CustomerFields};

    #[test]
    fn duplicate_ids_go_to_later_rounds_in_order() {
        let c = |id: i64, md: &str| {
            Customer::new(CustomerFields {
                id,
                modified_date: md,
                ..CustomerFields::default()
            })
        };
        let recs = vec![c(1, "a"), c(2, "a"), c(1, "b"), c(3, "a"), c(1, "c")];
        let (rounds, round_of) = rounds(&recs);
        assert_eq!(round_of, [0, 0, 1, 0, 2]);
        let r: Vec<Vec<(i64, &str)>> = rounds
            .iter()
            .map(|r| r.iter().map(|c| (c.id, c.modified_date())).collect())
            .collect();
        assert_eq!(
            r,
            vec![
                vec![(1, "a"), (2, "a"), (3, "a")],
                vec![(1, "b")],
                vec![(1, "c")]
            ]
        );
    }

    #[test]
    fn upsert_casts_instants_and_json() {
        let sql = upsert_sql("customers", Customer::COLUMNS);
        assert!(sql.contains("s.modified_date::timestamptz") && sql.contains("s.extra::jsonb"));
        assert!(sql.contains("$1::bigint[]") && sql.contains("$12::text::timestamptz"));
    }
}
