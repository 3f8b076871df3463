//! The other bulk path, kept measurable: binary `COPY` of a round into an UNLOGGED staging
//! table (a regular table, not `ON COMMIT DROP` temp: CockroachDB and Citus lack those),
//! then one `INSERT … SELECT … ON CONFLICT … WHERE` merge. Same statement shape and counts
//! as the unnest path; see docs/postgresql.md for which is the default and why.

use postgres::Transaction;
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::{ToSql, Type};

use crate::resource::{Cell, Column, ColumnType, Row};

fn sent_type(ty: ColumnType) -> (Type, &'static str) {
    match ty {
        ColumnType::BigInt => (Type::INT8, "bigint"),
        ColumnType::Bool => (Type::BOOL, "boolean"),
        _ => (Type::TEXT, "text"),
    }
}

/// The staging table of `table`: API columns as sent (bigint or text), cast in the merge.
fn staging(table: &str) -> String {
    format!("{table}_staging")
}

pub(super) fn create_staging_sql(table: &str, columns: &[Column]) -> String {
    let cols: Vec<String> = columns
        .iter()
        .map(|c| format!("{} {}", c.name, sent_type(c.ty).1))
        .collect();
    format!(
        "CREATE UNLOGGED TABLE IF NOT EXISTS {} ({})",
        staging(table),
        cols.join(", ")
    )
}

/// The merge: `upsert` (the unnest statement) with its source swapped for the staging table.
pub(super) fn merge_sql(table: &str, columns: &[Column], upsert: &str) -> String {
    let from_start = upsert.find("FROM unnest(").unwrap_or(0);
    let from_end = upsert[from_start..]
        .find(" ON CONFLICT")
        .map_or(upsert.len(), |i| from_start + i);
    let names: Vec<&str> = columns.iter().map(|c| c.name).collect();
    format!(
        "{}FROM (SELECT {} FROM {}) AS s{}",
        &upsert[..from_start],
        names.join(", "),
        staging(table),
        &upsert[from_end..]
    )
    .replace(&format!("${}::", columns.len() + 1), "$1::")
}

/// Loads `round` into the staging table and merges it; returns the merge's `(xmax = 0)` rows.
pub(super) fn copy_round<T: Row>(
    tx: &mut Transaction<'_>,
    table: &str,
    merge: &str,
    round: &[&T],
    now: &str,
) -> Result<Vec<postgres::Row>, postgres::Error> {
    tx.batch_execute(&format!("TRUNCATE {}", staging(table)))?;
    let types: Vec<Type> = T::COLUMNS.iter().map(|c| sent_type(c.ty).0).collect();
    let names: Vec<&str> = T::COLUMNS.iter().map(|c| c.name).collect();
    let sink = tx.copy_in(&format!(
        "COPY {} ({}) FROM STDIN BINARY",
        staging(table),
        names.join(", ")
    ))?;
    let mut w = BinaryCopyInWriter::new(sink, &types);
    let mut ints: Vec<Option<i64>> = vec![None; T::COLUMNS.len()];
    let mut texts: Vec<Option<&str>> = vec![None; T::COLUMNS.len()];
    let mut bools: Vec<Option<bool>> = vec![None; T::COLUMNS.len()];
    for rec in round {
        for i in 0..T::COLUMNS.len() {
            match rec.cell(i) {
                Cell::Int(v) => ints[i] = v,
                Cell::Text(v) => texts[i] = v,
                Cell::Bool(v) => bools[i] = v,
            }
        }
        let row: Vec<&(dyn ToSql + Sync)> = T::COLUMNS
            .iter()
            .enumerate()
            .map(|(i, c)| -> &(dyn ToSql + Sync) {
                match c.ty {
                    ColumnType::BigInt => &ints[i],
                    ColumnType::Bool => &bools[i],
                    _ => &texts[i],
                }
            })
            .collect();
        w.write(&row)?;
    }
    w.finish()?;
    tx.query(merge, &[&now])
}
