//! What a route serves, described as data: its path and its records' wire fields (name, kind,
//! nullability, order) and which of them take an exact filter. The fake's own description,
//! written from the vendor's documentation, never from the product's declarations, so a field
//! list that is wrong in the product fails against the fake instead of agreeing with it.
//!
//! Every resource is a DRF list view with the same behaviour: page-number pagination,
//! `id__gt/gte/lt/lte`, `modified_date[__gt/gte/lt/lte]`, `sort` by id or `modified_date`
//! with ties scrambled, plus the exact filters its fields declare. A description is checked
//! when it is built (in a `static`, at compile time).
//!
//! ```
//! use fake_oms::{Field, Resource};
//! static WIDGETS: Resource = Resource::new(
//!     "/api/v1/oms/widgets/",
//!     &[
//!         Field::integer("id"),
//!         Field::text("name").exact_filter("name"),
//!         Field::timestamp("modified_date"),
//!         Field::timestamp("checked_at").nullable(),
//!         Field::boolean("active").exact_filter("active"),
//!     ],
//! );
//! assert_eq!(WIDGETS.position("checked_at"), Some(3));
//! ```

/// The JSON kind of a field's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A JSON integer (`i64`).
    Integer,
    /// A JSON string.
    Text,
    /// `true` / `false`.
    Boolean,
    /// A datetime string as DRF writes it (`2023-10-06T08:42:53.427050Z`).
    Timestamp,
}

/// One wire field of a resource's records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    pub name: &'static str,
    pub kind: Kind,
    /// Whether the value may be JSON `null`.
    pub nullable: bool,
    /// The query parameter of django-filter's exact filter on this field, if it has one
    /// (customers filter `channel` as `channel_id`).
    pub filter: Option<&'static str>,
}

impl Field {
    const fn of(name: &'static str, kind: Kind) -> Field {
        Field {
            name,
            kind,
            nullable: false,
            filter: None,
        }
    }

    pub const fn integer(name: &'static str) -> Field {
        Field::of(name, Kind::Integer)
    }

    pub const fn text(name: &'static str) -> Field {
        Field::of(name, Kind::Text)
    }

    pub const fn boolean(name: &'static str) -> Field {
        Field::of(name, Kind::Boolean)
    }

    pub const fn timestamp(name: &'static str) -> Field {
        Field::of(name, Kind::Timestamp)
    }

    /// The value may be `null`.
    pub const fn nullable(mut self) -> Field {
        self.nullable = true;
        self
    }

    /// The endpoint takes `param=value` and keeps the records whose field equals it: text as
    /// given (trimmed), an integer (anything else is the ORM's 500), a boolean as Django's
    /// `BooleanFilter` reads it (`true`/`True`/`1`, `false`/`False`/`0`; else ignored). A
    /// `null` field never matches. Timestamps have no exact filter here.
    pub const fn exact_filter(mut self, param: &'static str) -> Field {
        assert!(
            !matches!(self.kind, Kind::Timestamp),
            "timestamp fields take no exact filter"
        );
        self.filter = Some(param);
        self
    }
}

/// A resource the fake serves on its own route.
#[derive(Debug, PartialEq, Eq)]
pub struct Resource {
    /// The route, e.g. `/api/v1/oms/customers/list-simple/`.
    pub path: &'static str,
    /// The wire fields in the order DRF writes them.
    pub fields: &'static [Field],
    id_at: usize,
    modified_at: usize,
}

const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

const fn find(fields: &[Field], name: &str) -> Option<usize> {
    let mut i = 0;
    while i < fields.len() {
        if same(fields[i].name, name) {
            return Some(i);
        }
        i += 1;
    }
    None
}

impl Resource {
    /// Checks the description: a non-null integer `id`, a non-null timestamp `modified_date`
    /// (the keys every list view filters and sorts on), unique field names, a path that starts
    /// and ends with `/`. In a `static` a failed check is a compile error.
    pub const fn new(path: &'static str, fields: &'static [Field]) -> Resource {
        let p = path.as_bytes();
        assert!(
            p.len() >= 2 && p[0] == b'/' && p[p.len() - 1] == b'/',
            "a resource path starts and ends with /"
        );
        let Some(id_at) = find(fields, "id") else {
            panic!("a resource has an `id` field")
        };
        let Some(modified_at) = find(fields, "modified_date") else {
            panic!("a resource has a `modified_date` field")
        };
        assert!(
            matches!(fields[id_at].kind, Kind::Integer) && !fields[id_at].nullable,
            "`id` is a non-null integer"
        );
        assert!(
            matches!(fields[modified_at].kind, Kind::Timestamp) && !fields[modified_at].nullable,
            "`modified_date` is a non-null timestamp"
        );
        let mut i = 0;
        while i < fields.len() {
            let mut j = i + 1;
            while j < fields.len() {
                assert!(
                    !same(fields[i].name, fields[j].name),
                    "field names are unique"
                );
                j += 1;
            }
            i += 1;
        }
        Resource {
            path,
            fields,
            id_at,
            modified_at,
        }
    }

    /// The position of a field in [`Resource::fields`].
    pub fn position(&self, name: &str) -> Option<usize> {
        find(self.fields, name)
    }

    /// The field names, in wire order.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.fields.iter().map(|f| f.name)
    }

    /// Where `id` is in [`Resource::fields`].
    pub fn id_position(&self) -> usize {
        self.id_at
    }

    /// Where `modified_date` is in [`Resource::fields`].
    pub fn modified_date_position(&self) -> usize {
        self.modified_at
    }

    /// The fields with an exact filter, with their query parameters.
    pub(crate) fn exact_filters(&self) -> impl Iterator<Item = (usize, &'static str)> + '_ {
        self.fields
            .iter()
            .enumerate()
            .filter_map(|(i, f)| f.filter.map(|p| (i, p)))
    }
}
