//! The backfill's fast path: binary `COPY` straight into the record table, for pages the write
//! core proved new (no stored row in their id interval, no id twice: see
//! [`crate::warehouse::write`]), so no conflict is possible and no merge is needed. Every value
//! goes in the table's own binary type: instants as microseconds since 2000-01-01 (exact, as
//! the canonical text is), `extra` as jsonb (version 1 + its text, which the server parses).

use std::error::Error;

use bytes::BytesMut;
use postgres::Transaction;
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use crate::resource::{Cell, ColumnType, Row};
use crate::timefmt;

type BoxError = Box<dyn Error + Sync + Send>;

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01T00:00:00Z).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// Days from 1970-01-01 to the proleptic Gregorian date `y-m-d` (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The instant `s` in PostgreSQL's binary form. The stored text is canonical
/// (`2023-10-06T08:42:53.427050Z`), read here without chrono: two fields of every record. Any
/// other RFC 3339 text goes through chrono.
fn pg_micros(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let digits = |from: usize, to: usize| -> Option<i64> {
        b.get(from..to)?.iter().try_fold(0i64, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0'))
        })
    };
    let shaped = b.len() == 27
        && [
            (4, b'-'),
            (7, b'-'),
            (10, b'T'),
            (13, b':'),
            (16, b':'),
            (19, b'.'),
            (26, b'Z'),
        ]
        .iter()
        .all(|&(i, c)| b[i] == c);
    let fast = shaped
        .then(|| {
            let (y, mo, d) = (digits(0, 4)?, digits(5, 7)?, digits(8, 10)?);
            let (h, mi, sec, us) = (
                digits(11, 13)?,
                digits(14, 16)?,
                digits(17, 19)?,
                digits(20, 26)?,
            );
            let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
            let month_days = match mo {
                1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
                4 | 6 | 9 | 11 => 30,
                2 if leap => 29,
                2 => 28,
                _ => 0,
            };
            // Out-of-range fields (a leap second, month 13) are chrono's to judge.
            let ok = (1..=month_days).contains(&d) && h < 24 && mi < 60;
            (ok && sec < 60).then(|| {
                let days = days_from_civil(y, mo, d);
                ((days * 86_400 + h * 3600 + mi * 60 + sec) * 1_000_000 + us) - PG_EPOCH_MICROS
            })
        })
        .flatten();
    fast.or_else(|| {
        let t = timefmt::parse_api(s)?;
        Some(t.timestamp_micros() - PG_EPOCH_MICROS)
    })
}

/// Bytes already in their column's binary form (see [`Pending`]), or NULL.
#[derive(Debug)]
struct Encoded<'a>(Option<&'a [u8]>);

impl ToSql for Encoded<'_> {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        match self.0 {
            Some(b) => {
                out.extend_from_slice(b);
                Ok(IsNull::No)
            }
            None => Ok(IsNull::Yes),
        }
    }
    fn accepts(_: &Type) -> bool {
        true
    }
    to_sql_checked!();
}

fn table_type(ty: ColumnType) -> Type {
    match ty {
        ColumnType::BigInt => Type::INT8,
        ColumnType::Bool => Type::BOOL,
        ColumnType::Text => Type::TEXT,
        ColumnType::Timestamp => Type::TIMESTAMPTZ,
        ColumnType::Json => Type::JSONB,
    }
}

/// Rows of new pages encoded for one binary COPY into `table`, not yet sent: the pages of a
/// transaction go in one COPY (one statement instead of one per page, which at 100 rows a
/// page was most of the cost). The dialect sends them before any statement that reads or
/// writes the table, and before the commit.
#[derive(Default)]
pub(super) struct Pending {
    table: &'static str,
    columns: &'static [crate::resource::Column],
    /// Every value's binary form, back to back.
    bytes: Vec<u8>,
    /// Per value: its end in `bytes`, or `None` for NULL; `columns.len() + 2` per row.
    ends: Vec<Option<u32>>,
    /// The id intervals `(from, to]` of the pages held.
    intervals: Vec<(i64, i64)>,
    /// Pages held.
    pub(super) pages: u64,
}

impl Pending {
    pub(super) fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Whether a held page's interval meets `(from, to]`.
    pub(super) fn overlaps(&self, from: i64, to: i64) -> bool {
        self.intervals.iter().any(|&(f, t)| f < to && from < t)
    }

    /// Encodes `records` (ids in `(from, to]`) with `now` as `synced_at` and
    /// `first_synced_at`; `false` (nothing held) when an instant cannot be read, so the
    /// caller stores the page another way and the server judges the value.
    pub(super) fn add<T: Row>(
        &mut self,
        table: &'static str,
        records: &[T],
        (from, to): (i64, i64),
        now: &str,
    ) -> bool {
        let Some(now) = pg_micros(now) else {
            return false;
        };
        let instants_ok = records.iter().all(|r| {
            T::COLUMNS
                .iter()
                .enumerate()
                .all(|(i, c)| match (c.ty, r.cell(i)) {
                    (ColumnType::Timestamp, Cell::Text(Some(v))) => pg_micros(v).is_some(),
                    _ => true,
                })
        });
        if !instants_ok {
            return false;
        }
        self.table = table;
        self.columns = T::COLUMNS;
        for r in records {
            for (i, c) in T::COLUMNS.iter().enumerate() {
                let present = match (c.ty, r.cell(i)) {
                    (_, Cell::Int(Some(v))) => {
                        self.bytes.extend_from_slice(&v.to_be_bytes());
                        true
                    }
                    (_, Cell::Bool(Some(v))) => {
                        self.bytes.push(u8::from(v));
                        true
                    }
                    (ColumnType::Timestamp, Cell::Text(Some(v))) => {
                        let us = pg_micros(v).unwrap_or_default();
                        self.bytes.extend_from_slice(&us.to_be_bytes());
                        true
                    }
                    (ColumnType::Json, Cell::Text(Some(v))) => {
                        self.bytes.push(1);
                        self.bytes.extend_from_slice(v.as_bytes());
                        true
                    }
                    (_, Cell::Text(Some(v))) => {
                        self.bytes.extend_from_slice(v.as_bytes());
                        true
                    }
                    _ => false,
                };
                self.end(present);
            }
            for _ in 0..2 {
                self.bytes.extend_from_slice(&now.to_be_bytes());
                self.end(true);
            }
        }
        self.intervals.push((from, to));
        self.pages += 1;
        true
    }

    fn end(&mut self, present: bool) {
        // A transaction holds a few MB at most (the writer's rows per commit).
        self.ends
            .push(present.then(|| u32::try_from(self.bytes.len()).unwrap_or(u32::MAX)));
    }

    /// Sends the held rows in one binary COPY and forgets them. A value the server refuses
    /// fails the COPY and with it the transaction: nothing of the pages, nor their
    /// checkpoints, is kept.
    pub(super) fn send(&mut self, tx: &mut Transaction<'_>) -> Result<(), postgres::Error> {
        if self.is_empty() {
            return Ok(());
        }
        let mut types: Vec<Type> = self.columns.iter().map(|c| table_type(c.ty)).collect();
        types.extend([Type::TIMESTAMPTZ, Type::TIMESTAMPTZ]);
        let names: Vec<&str> = self.columns.iter().map(|c| c.name).collect();
        let sink = tx.copy_in(&format!(
            "COPY {} ({}, synced_at, first_synced_at) FROM STDIN BINARY",
            self.table,
            names.join(", ")
        ))?;
        let mut w = BinaryCopyInWriter::new(sink, &types);
        let mut start = 0usize;
        let mut row: Vec<Encoded<'_>> = Vec::with_capacity(types.len());
        for values in self.ends.chunks(types.len()) {
            row.clear();
            for end in values {
                row.push(Encoded(end.map(|e| {
                    let e = e as usize;
                    let b = &self.bytes[start..e];
                    start = e;
                    b
                })));
            }
            let refs: Vec<&(dyn ToSql + Sync)> =
                row.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
            w.write(&refs)?;
        }
        w.finish()?;
        self.bytes.clear();
        self.ends.clear();
        self.intervals.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fast reading of the canonical form agrees with chrono's, and other forms (offsets,
    /// no fraction, a leap day, the 29th–31st) fall back to chrono.
    #[test]
    fn instants_in_binary_agree_with_chrono() {
        for s in [
            "2000-01-01T00:00:00.000000Z",
            "1999-12-31T23:59:59.999999Z",
            "2023-10-06T08:42:53.427050Z",
            "2024-02-29T12:00:00.000001Z",
            "2023-01-31T23:59:59.000000Z",
            "1970-01-01T00:00:00.000000Z",
            "1900-03-01T00:00:00.500000Z",
            "2023-10-06T10:42:53.427050+02:00",
            "2023-10-06T08:42:53Z",
        ] {
            let t = timefmt::parse_api(s).unwrap();
            assert_eq!(
                pg_micros(s),
                Some(t.timestamp_micros() - PG_EPOCH_MICROS),
                "{s}"
            );
        }
        assert_eq!(pg_micros("2000-01-01T00:00:00.000000Z"), Some(0));
        assert_eq!(pg_micros("not a date"), None);
        assert_eq!(pg_micros("2023-13-06T08:42:53.427050Z"), None);
    }
}
