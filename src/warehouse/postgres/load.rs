//! The backfill's fast path: binary `COPY` straight into the record table, for a page the write
//! core proved new (no stored row in its id interval, no id twice: see
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

/// A `timestamptz` sent as its canonical text, encoded in the binary form.
#[derive(Debug)]
struct Instant<'a>(Option<&'a str>);

impl ToSql for Instant<'_> {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        let Some(s) = self.0 else {
            return Ok(IsNull::Yes);
        };
        let us = pg_micros(s).ok_or_else(|| format!("not an instant: {s:?}"))?;
        out.extend_from_slice(&us.to_be_bytes());
        Ok(IsNull::No)
    }
    fn accepts(ty: &Type) -> bool {
        *ty == Type::TIMESTAMPTZ
    }
    to_sql_checked!();
}

/// A `jsonb` value from its JSON text: the binary form is a version byte, then the text.
#[derive(Debug)]
struct Jsonb<'a>(Option<&'a str>);

impl ToSql for Jsonb<'_> {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        let Some(s) = self.0 else {
            return Ok(IsNull::Yes);
        };
        out.extend_from_slice(&[1]);
        out.extend_from_slice(s.as_bytes());
        Ok(IsNull::No)
    }
    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSONB
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

/// One value of a record, typed for its column.
enum Value<'a> {
    Int(Option<i64>),
    Bool(Option<bool>),
    Text(Option<&'a str>),
    Instant(Instant<'a>),
    Json(Jsonb<'a>),
}

impl Value<'_> {
    fn sql(&self) -> &(dyn ToSql + Sync) {
        match self {
            Value::Int(v) => v,
            Value::Bool(v) => v,
            Value::Text(v) => v,
            Value::Instant(v) => v,
            Value::Json(v) => v,
        }
    }
}

/// Loads `records` into `table` by binary COPY, `now` as their `synced_at` and
/// `first_synced_at` (`deleted_at` stays NULL). A value the server refuses fails the COPY and
/// with it the transaction: nothing of the page, nor its checkpoint, is kept.
pub(super) fn copy_new<T: Row>(
    tx: &mut Transaction<'_>,
    table: &str,
    records: &[T],
    now: &str,
) -> Result<u64, postgres::Error> {
    let columns = T::COLUMNS;
    let mut types: Vec<Type> = columns.iter().map(|c| table_type(c.ty)).collect();
    types.extend([Type::TIMESTAMPTZ, Type::TIMESTAMPTZ]);
    let names: Vec<&str> = columns.iter().map(|c| c.name).collect();
    let sink = tx.copy_in(&format!(
        "COPY {table} ({}, synced_at, first_synced_at) FROM STDIN BINARY",
        names.join(", ")
    ))?;
    let mut w = BinaryCopyInWriter::new(sink, &types);
    let now = Instant(Some(now));
    let mut values: Vec<Value<'_>> = Vec::with_capacity(columns.len());
    for rec in records {
        values.clear();
        values.extend(
            columns
                .iter()
                .enumerate()
                .map(|(i, c)| match (c.ty, rec.cell(i)) {
                    (_, Cell::Int(v)) => Value::Int(v),
                    (_, Cell::Bool(v)) => Value::Bool(v),
                    (ColumnType::Timestamp, Cell::Text(v)) => Value::Instant(Instant(v)),
                    (ColumnType::Json, Cell::Text(v)) => Value::Json(Jsonb(v)),
                    (_, Cell::Text(v)) => Value::Text(v),
                }),
        );
        let mut row: Vec<&(dyn ToSql + Sync)> = values.iter().map(Value::sql).collect();
        row.extend([&now as &(dyn ToSql + Sync), &now]);
        w.write(&row)?;
    }
    w.finish()
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
