//! The PostgreSQL side of [`TableShape`]: declared types and the catalogue read back.

use postgres::GenericClient;

use crate::resource::ColumnType;
use crate::warehouse::shape::TableShape;

/// The PostgreSQL type of a column of type `ty`, as `format_type` names it.
pub fn declared_type(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::BigInt => "bigint",
        ColumnType::Text => "text",
        ColumnType::Timestamp => "timestamp with time zone",
        ColumnType::Json => "jsonb",
        ColumnType::Bool => "boolean",
    }
}

/// The shape of `table` (found through the connection's `search_path`).
pub fn read_shape<C: GenericClient>(c: &mut C, table: &str) -> Result<TableShape, postgres::Error> {
    let columns = c
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull
               FROM pg_attribute a
              WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
              ORDER BY a.attnum",
            &[&table],
        )?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
        .collect::<Result<Vec<(String, String, bool)>, postgres::Error>>()?;
    let mut primary_key = vec![];
    let mut indexes = vec![];
    for r in c.query(
        "SELECT ic.relname::text, i.indisprimary,
                array(SELECT a.attname::text
                        FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
                        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                       ORDER BY k.ord)
           FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
          WHERE i.indrelid = to_regclass($1)
          ORDER BY 1",
        &[&table],
    )? {
        let (name, primary, cols): (String, bool, Vec<String>) =
            (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
        if primary {
            primary_key = cols;
        } else {
            indexes.push((name, cols));
        }
    }
    Ok(TableShape {
        columns,
        primary_key,
        indexes,
    })
}
