//! A record table's shape (columns with their declared types and nullability, primary key,
//! secondary indexes), as a resource's declaration implies it and as a backend reads it back
//! from its catalogue, so tests can prove the migrations create what the declarations say.

use crate::resource::{ColumnType, Spec};

/// One column: name, declared type (lower case, as the backend names it), `NOT NULL`.
pub type ShapeColumn = (String, String, bool);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableShape {
    /// In table order.
    pub columns: Vec<ShapeColumn>,
    pub primary_key: Vec<String>,
    /// Secondary indexes, `(name, columns)`, sorted by name.
    pub indexes: Vec<(String, Vec<String>)>,
}

impl TableShape {
    /// What `spec`'s table must look like on a backend whose declared type of a column of
    /// type `ty` is `type_of(ty)`: the API columns, then the sync columns every record table
    /// has (`deleted_at`, `synced_at`, `first_synced_at`), keyed by `id`.
    pub fn expected(spec: &Spec, type_of: fn(ColumnType) -> &'static str) -> TableShape {
        let ts = type_of(ColumnType::Timestamp);
        let mut columns: Vec<ShapeColumn> = spec
            .columns
            .iter()
            .map(|c| (c.name.to_string(), type_of(c.ty).to_string(), !c.nullable))
            .collect();
        for (name, not_null) in [
            ("deleted_at", false),
            ("synced_at", true),
            ("first_synced_at", true),
        ] {
            columns.push((name.to_string(), ts.to_string(), not_null));
        }
        let mut indexes: Vec<(String, Vec<String>)> = spec
            .indexes
            .iter()
            .map(|i| {
                let cols = i.columns.iter().map(|c| c.to_string()).collect();
                (i.name.to_string(), cols)
            })
            .collect();
        indexes.sort();
        TableShape {
            columns,
            primary_key: vec!["id".to_string()],
            indexes,
        }
    }
}
