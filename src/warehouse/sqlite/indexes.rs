//! Secondary indexes: dropped before a bulk load into an empty table and built once at its end.

use rusqlite::{Connection, OptionalExtension};

pub use crate::warehouse::SECONDARY_INDEXES;

/// Creates the secondary indexes of `table` that are missing.
pub(super) fn build_secondary_indexes(conn: &Connection, table: &str) -> rusqlite::Result<()> {
    for (t, name, sql) in SECONDARY_INDEXES {
        if *t != table {
            continue;
        }
        let exists = conn
            .query_row(
                "SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?1",
                [name],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        if !exists {
            conn.execute_batch(sql)?;
        }
    }
    Ok(())
}

/// Drops the secondary indexes of `table` if it holds no row (bulk load ahead).
pub(super) fn drop_secondary_indexes_if_empty(
    conn: &Connection,
    table: &str,
) -> rusqlite::Result<()> {
    let empty = conn
        .query_row(&format!("SELECT 1 FROM {table} LIMIT 1"), [], |_| Ok(()))
        .optional()?
        .is_none();
    if empty {
        for (t, name, _) in SECONDARY_INDEXES {
            if *t == table {
                conn.execute_batch(&format!("DROP INDEX IF EXISTS {name}"))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::SqliteWarehouse;
    use super::super::connection::MIGRATIONS;
    use super::super::testutil::{apply, customer};
    use super::*;
    use crate::resource::Customers;
    use crate::warehouse::{BackfillState, Confirmed, Mark, RunKind, Warehouse};

    fn index_sql(conn: &Connection) -> Vec<(String, String)> {
        let mut stmt = conn
            .prepare(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL
                 AND tbl_name IN ('customers') ORDER BY name",
            )
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    #[test]
    fn secondary_index_list_matches_the_migrations() {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join("m.db")).unwrap();
        let mut conn = conn;
        MIGRATIONS.as_ref().unwrap().to_latest(&mut conn).unwrap();
        let norm = |s: &str| {
            s.replace("IF NOT EXISTS ", "")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        };
        let mut want: Vec<(String, String)> = SECONDARY_INDEXES
            .iter()
            .map(|(_, n, sql)| (n.to_string(), norm(sql)))
            .collect();
        want.sort();
        let got: Vec<(String, String)> = index_sql(&conn)
            .into_iter()
            .map(|(n, sql)| (n, norm(&sql)))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn bulk_load_drops_indexes_only_when_empty_and_open_restores_them() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("w.db");
        let state = BackfillState {
            run_id: None,
            started_at: "2023-01-01T00:00:00.000000Z".into(),
            high_water_date: None,
            ranges: vec![],
        };
        let mut wh = SqliteWarehouse::open(&p).unwrap();
        let full = index_sql(wh.connection());
        assert_eq!(full.len(), SECONDARY_INDEXES.len());
        Warehouse::<Customers>::start_backfill(&mut wh, &state).unwrap();
        assert!(
            index_sql(wh.connection()).is_empty(),
            "empty table: dropped"
        );
        // Killed mid-backfill: the next open builds them again.
        drop(wh);
        let mut wh = SqliteWarehouse::open(&p).unwrap();
        assert_eq!(index_sql(wh.connection()), full);
        // Finishing a bulk load builds them too.
        Warehouse::<Customers>::start_backfill(&mut wh, &state).unwrap();
        Warehouse::<Customers>::finish_backfill(&mut wh, Mark::Start).unwrap();
        assert_eq!(index_sql(wh.connection()), full);
        // A table with rows keeps its indexes through a backfill.
        let run =
            Warehouse::<Customers>::begin_run(&mut wh, RunKind::Backfill, &Mark::Start).unwrap();
        let t = "2023-01-01T00:00:01.000000Z";
        apply(
            &mut wh,
            run,
            vec![customer(1, t, "a")],
            Mark::at(t, Confirmed::Nothing),
        );
        Warehouse::<Customers>::start_backfill(&mut wh, &state).unwrap();
        assert_eq!(index_sql(wh.connection()), full);
    }
}
