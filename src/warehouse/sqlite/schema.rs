//! The SQLite side of [`TableShape`]: declared types and the catalogue read back.

use rusqlite::Connection;

use crate::resource::ColumnType;
use crate::warehouse::shape::TableShape;

/// The declared SQLite type of a column of type `ty` (lower case). Instants are canonical
/// text in a `DATETIME` column (so BI tools see a date-time), JSON is text.
pub fn declared_type(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::BigInt => "integer",
        ColumnType::Text | ColumnType::Json => "text",
        ColumnType::Timestamp => "datetime",
        ColumnType::Bool => "boolean",
    }
}

/// The shape of `table` as the database has it.
pub fn read_shape(conn: &Connection, table: &str) -> rusqlite::Result<TableShape> {
    let mut columns = vec![];
    let mut primary_key = vec![];
    let mut stmt = conn.prepare("SELECT name, type, \"notnull\", pk FROM pragma_table_info(?1)")?;
    let mut rows = stmt.query([table])?;
    while let Some(r) = rows.next()? {
        let (name, ty, not_null, pk): (String, String, bool, i64) =
            (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
        if pk > 0 {
            primary_key.push(name.clone());
        }
        // SQLite enforces NOT NULL on an INTEGER PRIMARY KEY (the rowid) without declaring it.
        columns.push((name, ty.to_lowercase(), not_null || pk > 0));
    }
    let mut indexes = vec![];
    let mut stmt =
        conn.prepare("SELECT name FROM pragma_index_list(?1) WHERE origin = 'c' ORDER BY name")?;
    let names: Vec<String> = stmt
        .query_map([table], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for name in names {
        let mut cols = conn.prepare("SELECT name FROM pragma_index_info(?1) ORDER BY seqno")?;
        let cols: Vec<String> = cols
            .query_map([&name], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        indexes.push((name, cols));
    }
    Ok(TableShape {
        columns,
        primary_key,
        indexes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::warehouse::SqliteWarehouse;

    /// Every shipped resource's table, as the migrations create it, is what its declaration
    /// says: a column forgotten in either fails here, not in a BI query.
    #[test]
    fn migrations_create_what_the_declarations_say() {
        let dir = tempfile::tempdir().unwrap();
        let wh = SqliteWarehouse::open(&dir.path().join("w.db")).unwrap();
        for spec in crate::resource::ALL {
            let got = read_shape(wh.connection(), spec.table).unwrap();
            assert_eq!(
                got,
                TableShape::expected(spec, declared_type),
                "{}",
                spec.table
            );
        }
    }

    /// The comparison sees a column the migration lacks, a wrong type, a wrong nullability and
    /// a missing index.
    #[test]
    fn a_forgotten_column_or_index_is_seen() {
        let spec = &crate::resource::customers::SPEC;
        let want = TableShape::expected(spec, declared_type);
        let conn = Connection::open_in_memory().unwrap();
        let create = |conn: &Connection, drop_col: &str, ty_of_email: &str, md_null: &str| {
            conn.execute_batch("DROP TABLE IF EXISTS customers")
                .unwrap();
            let cols: Vec<String> = want
                .columns
                .iter()
                .filter(|c| c.0 != drop_col)
                .map(|(n, t, nn)| {
                    let t = if n == "email" { ty_of_email } else { t };
                    let nn = if n == "modified_date" {
                        md_null
                    } else if *nn && n != "id" {
                        "NOT NULL"
                    } else {
                        ""
                    };
                    let pk = if n == "id" { "PRIMARY KEY" } else { "" };
                    format!("{n} {t} {pk} {nn}")
                })
                .collect();
            conn.execute_batch(&format!("CREATE TABLE customers ({})", cols.join(", ")))
                .unwrap();
            for i in spec.indexes {
                conn.execute_batch(&i.create_sql("customers")).unwrap();
            }
        };
        create(&conn, "", "text", "NOT NULL");
        assert_eq!(
            read_shape(&conn, "customers").unwrap(),
            want,
            "the faithful copy"
        );
        create(&conn, "erp_code", "text", "NOT NULL");
        assert_ne!(
            read_shape(&conn, "customers").unwrap(),
            want,
            "a column missing"
        );
        create(&conn, "", "integer", "NOT NULL");
        assert_ne!(
            read_shape(&conn, "customers").unwrap(),
            want,
            "a wrong type"
        );
        create(&conn, "", "text", "");
        assert_ne!(read_shape(&conn, "customers").unwrap(), want, "nullability");
        create(&conn, "", "text", "NOT NULL");
        conn.execute_batch("DROP INDEX customers_email").unwrap();
        assert_ne!(
            read_shape(&conn, "customers").unwrap(),
            want,
            "an index missing"
        );
    }
}
