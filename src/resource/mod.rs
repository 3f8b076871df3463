//! What differs between OMS list resources. Every OMS list endpoint shares the response shape
//! (`count/next/previous/results`); a [`Resource`] is one declaration
//! ([`crate::declare_resource!`]): its path, its fields (name, type, nullable), its cursor, its
//! indexes and the filters its endpoint takes. The record, its parser, its cells and the column
//! and index lists all follow from it ([`record`]). Each resource is one file ([`customers`],
//! [`stock_locations`], [`customer_addresses`]) plus a migration per backend.

pub mod customer_addresses;
pub mod customers;
mod declare;
pub mod parse;
pub mod record;
pub mod stock_locations;

use serde_json::value::RawValue;

pub use customer_addresses::{CustomerAddress, CustomerAddressFields, CustomerAddresses};
pub use customers::{Customer, CustomerFields, Customers};
pub use stock_locations::{StockLocation, StockLocationFields, StockLocations};

/// A record the API sent that cannot be stored as a row; it goes to quarantine, never dropped.
#[derive(Debug, Clone, PartialEq)]
pub struct BadRecord {
    /// The record's id when it could still be read.
    pub id: Option<i64>,
    /// Its modified_date (canonical) when it could still be read; keeps keyset paging moving.
    pub modified_date: Option<String>,
    pub raw: String,
    pub error: String,
}

/// The two keyset fields every stored record has.
pub trait Keyed {
    fn id(&self) -> i64;
    /// Canonical UTC text (see [`crate::timefmt`]).
    fn modified_date(&self) -> &str;
}

/// How a column is typed in the warehouse; each backend maps it to its own type (SQLite keeps
/// instants as canonical text, PostgreSQL as `timestamptz`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    BigInt,
    Text,
    /// An instant, as canonical UTC text (see [`crate::timefmt`]) in a [`Cell::Text`].
    Timestamp,
    /// A JSON object's text in a [`Cell::Text`].
    Json,
    /// A boolean in a [`Cell::Bool`].
    Bool,
}

/// One column of a resource's warehouse table (API-sourced; the sync columns are the backend's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    pub ty: ColumnType,
    /// Whether the API may send `null` (or leave the field out).
    pub nullable: bool,
}

/// A secondary index of a resource's table (the primary key is `id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Index {
    pub name: &'static str,
    pub columns: &'static [&'static str],
}

impl Index {
    /// Its `CREATE INDEX` statement on `table`, the same SQL for every backend.
    pub fn create_sql(&self, table: &str) -> String {
        format!(
            "CREATE INDEX IF NOT EXISTS {} ON {table} ({})",
            self.name,
            self.columns.join(", ")
        )
    }
}

/// The query filters an endpoint takes (django-filter ignores any other parameter silently,
/// so a sync must know which it can trust).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Filters {
    /// `modified_date__gt`, `modified_date__gte` and exact `modified_date`.
    pub modified_date: bool,
    /// `id__gt`.
    pub id_gt: bool,
    /// `sort=modified_date` and `sort=id`.
    pub sort: bool,
}

/// A resource as data: what the warehouse and the commands need without its record type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    /// Stream name: the key of its checkpoint and run history.
    pub name: &'static str,
    /// Endpoint path below `api.base_url`.
    pub path: &'static str,
    /// Warehouse table.
    pub table: &'static str,
    /// The API fields in order (`id` first), then `extra`.
    pub columns: &'static [Column],
    /// The incremental cursor's column (`modified_date`).
    pub cursor: &'static str,
    pub indexes: &'static [Index],
    pub filters: Filters,
}

/// Every resource oms-sync ships, in the order their streams run.
pub const ALL: &[&Spec] = &[
    &customers::SPEC,
    &stock_locations::SPEC,
    &customer_addresses::SPEC,
];

/// One value of a stored row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cell<'a> {
    Int(Option<i64>),
    Text(Option<&'a str>),
    Bool(Option<bool>),
}

impl From<i64> for Cell<'_> {
    fn from(v: i64) -> Self {
        Cell::Int(Some(v))
    }
}
impl From<Option<i64>> for Cell<'_> {
    fn from(v: Option<i64>) -> Self {
        Cell::Int(v)
    }
}
impl From<bool> for Cell<'_> {
    fn from(v: bool) -> Self {
        Cell::Bool(Some(v))
    }
}
impl From<Option<bool>> for Cell<'_> {
    fn from(v: Option<bool>) -> Self {
        Cell::Bool(v)
    }
}
impl<'a> From<&'a str> for Cell<'a> {
    fn from(v: &'a str) -> Self {
        Cell::Text(Some(v))
    }
}
impl<'a> From<Option<&'a str>> for Cell<'a> {
    fn from(v: Option<&'a str>) -> Self {
        Cell::Text(v)
    }
}

/// A field's value out of its [`Cell`] (the inverse of `Cell::from`): a cell of another kind,
/// or null in a required field, gives the type's default.
pub trait FromCell<'a>: Sized {
    fn from_cell(c: Cell<'a>) -> Self;
}
impl FromCell<'_> for Option<i64> {
    fn from_cell(c: Cell<'_>) -> Self {
        match c {
            Cell::Int(v) => v,
            _ => None,
        }
    }
}
impl FromCell<'_> for i64 {
    fn from_cell(c: Cell<'_>) -> Self {
        Option::<i64>::from_cell(c).unwrap_or_default()
    }
}
impl FromCell<'_> for Option<bool> {
    fn from_cell(c: Cell<'_>) -> Self {
        match c {
            Cell::Bool(v) => v,
            _ => None,
        }
    }
}
impl FromCell<'_> for bool {
    fn from_cell(c: Cell<'_>) -> Self {
        Option::<bool>::from_cell(c).unwrap_or_default()
    }
}
impl<'a> FromCell<'a> for Option<&'a str> {
    fn from_cell(c: Cell<'a>) -> Self {
        match c {
            Cell::Text(v) => v,
            _ => None,
        }
    }
}
impl<'a> FromCell<'a> for &'a str {
    fn from_cell(c: Cell<'a>) -> Self {
        Option::<&str>::from_cell(c).unwrap_or_default()
    }
}

/// A record as a warehouse row, whatever the backend.
pub trait Row: Keyed {
    /// The columns in order: `id` first, `modified_date` among them.
    const COLUMNS: &'static [Column];
    /// The value of `COLUMNS[i]`.
    fn cell(&self, i: usize) -> Cell<'_>;
}

/// One OMS list resource.
pub trait Resource: Send + Sync + 'static {
    type Record: Row + Send + Sync + std::fmt::Debug + 'static;
    /// The declaration, as data.
    const SPEC: &'static Spec;
    /// Stream name: the key of its checkpoint and run history.
    const NAME: &'static str;
    /// Endpoint path below `api.base_url`.
    const PATH: &'static str;
    /// Warehouse table.
    const TABLE: &'static str;
    /// Parses one element of `results`; never panics on any JSON.
    fn parse(raw: &RawValue) -> Result<Self::Record, BadRecord>;
    /// Reads one element of `results` straight from the page's parser: the one-pass path for
    /// a page whose elements all parse (see [`crate::api::parse_page`]). Any error only sends
    /// the page to [`Resource::parse`], element by element, which quarantines what is bad; so
    /// it must accept exactly what `parse` accepts, and give the same record.
    fn read<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Self::Record, D::Error>;
}

/// Reads what can still be read of a record that failed to parse.
pub(crate) fn salvage(raw: &RawValue, error: String) -> BadRecord {
    let value: Option<serde_json::Value> = serde_json::from_str(raw.get()).ok();
    let id = value
        .as_ref()
        .and_then(|v| v.get("id"))
        .and_then(|v| v.as_i64());
    let modified_date = value
        .as_ref()
        .and_then(|v| v.get("modified_date"))
        .and_then(|v| v.as_str())
        .and_then(|v| crate::timefmt::normalize(v).map(std::borrow::Cow::into_owned));
    BadRecord {
        id,
        modified_date,
        raw: raw.get().to_string(),
        error,
    }
}
