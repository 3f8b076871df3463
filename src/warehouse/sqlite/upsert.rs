//! The statements that store a record in SQLite, built once per table from its declaration.

use rusqlite::Statement;
use rusqlite::types::{ToSqlOutput, Value, ValueRef};

use crate::resource::{Cell, Index, Row, Spec};

/// A cell as a SQLite value (instants and JSON are text in SQLite).
impl rusqlite::ToSql for Cell<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match *self {
            Cell::Int(Some(v)) => ToSqlOutput::Owned(Value::Integer(v)),
            Cell::Text(Some(s)) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Cell::Bool(Some(b)) => ToSqlOutput::Owned(Value::Integer(b.into())),
            Cell::Int(None) | Cell::Text(None) | Cell::Bool(None) => {
                ToSqlOutput::Owned(Value::Null)
            }
        })
    }
}

/// Binds a row to parameters 1..=COLUMNS.len() of the upsert.
pub(super) fn bind<T: Row>(row: &T, stmt: &mut Statement<'_>) -> rusqlite::Result<()> {
    for i in 0..T::COLUMNS.len() {
        stmt.raw_bind_parameter(i + 1, row.cell(i))?;
    }
    Ok(())
}

/// The statements that store one record: never replace a row with an older version, and do
/// not rewrite a row whose content is the same (a lookback re-read costs a lookup, not a
/// write). Public so the benchmark's raw loop runs the very same SQL. Both take the columns in
/// order as `?1..?n`, then the sync time.
///
/// - No `RETURNING`: it makes SQLite collect each row's result in a temporary B-tree, which
///   cost a third of a bulk load's time; what happened is read from the connection instead
///   (see [`classify_upsert`]).
/// - Setting an indexed column, even to the value it has, makes SQLite rewrite its index
///   entry: one more random index page dirtied per changed row (written twice, to the WAL and
///   at the checkpoint). So `upsert` leaves the indexed columns other than `modified_date`
///   (which every real change moves) alone and applies only while they are unchanged; when
///   it changes nothing, `update` sets every column under the same conditions.
#[derive(Debug, Clone)]
pub struct UpsertSql {
    /// `INSERT … ON CONFLICT(id) DO UPDATE` of the columns not in `kept`.
    pub upsert: String,
    /// `UPDATE` of every column; run only when `upsert` changed nothing.
    pub update: String,
}

impl UpsertSql {
    pub fn new(spec: &Spec) -> UpsertSql {
        let table = spec.table;
        let columns: Vec<&str> = spec.columns.iter().map(|c| c.name).collect();
        let kept: Vec<&str> = indexed_columns(spec.indexes)
            .into_iter()
            .filter(|c| *c != "modified_date" && columns[1..].contains(c))
            .collect();
        let n = columns.len();
        let now = n + 1;
        let param = |c: &str| columns.iter().position(|x| *x == c).map_or(0, |i| i + 1);
        // The write condition, with `new(c)` the incoming value of column c.
        let cond = |new: &dyn Fn(&str) -> String| {
            let differs: Vec<String> = columns[1..]
                .iter()
                .filter(|c| **c != "modified_date")
                .map(|c| format!("{} IS NOT {table}.{c}", new(c)))
                .collect();
            format!(
                "({md} > {table}.modified_date \
                  OR ({md} = {table}.modified_date \
                      AND ({table}.deleted_at IS NOT NULL OR {})))",
                differs.join(" OR "),
                md = new("modified_date"),
            )
        };
        let excluded = |c: &str| format!("excluded.{c}");
        let bound = |c: &str| format!("?{}", param(c));
        let sets: Vec<String> = columns[1..]
            .iter()
            .filter(|c| !kept.contains(c))
            .map(|c| format!("{c} = excluded.{c}"))
            .collect();
        let same: String = kept
            .iter()
            .map(|c| format!(" AND excluded.{c} IS {table}.{c}"))
            .collect();
        let upsert = format!(
            "INSERT INTO {table} ({}, deleted_at, synced_at, first_synced_at) \
             VALUES ({}, NULL, ?{now}, ?{now}) \
             ON CONFLICT(id) DO UPDATE SET {}, deleted_at = NULL, synced_at = excluded.synced_at \
             WHERE {}{same}",
            columns.join(", "),
            (1..=n)
                .map(|i| format!("?{i}"))
                .collect::<Vec<_>>()
                .join(", "),
            sets.join(", "),
            cond(&excluded),
        );
        let all_sets: Vec<String> = columns[1..]
            .iter()
            .map(|c| format!("{c} = ?{}", param(c)))
            .collect();
        let update = format!(
            "UPDATE {table} SET {}, deleted_at = NULL, synced_at = ?{now} WHERE id = ?1 AND {}",
            all_sets.join(", "),
            cond(&bound),
        );
        UpsertSql { upsert, update }
    }
}

/// The columns of the secondary indexes in `indexes`.
fn indexed_columns(indexes: &[Index]) -> Vec<&'static str> {
    indexes
        .iter()
        .flat_map(|i| i.columns.iter().copied())
        .collect()
}
