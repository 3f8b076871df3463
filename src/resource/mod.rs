//! What differs between OMS list resources. Every OMS list endpoint shares the response shape
//! (`count/next/previous/results`), the `id`/`modified_date` filters and `sort`; a [`Resource`]
//! adds only its path, how one record parses, and how it maps onto its warehouse table.
//! Adding addresses or orders later means one more file beside [`customers`].

pub mod customers;

use serde_json::value::RawValue;

pub use customers::{Customer, CustomerFields, Customers};

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
}

/// One column of a resource's warehouse table (API-sourced; the sync columns are the backend's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    pub ty: ColumnType,
}

/// One value of a stored row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cell<'a> {
    Int(Option<i64>),
    Text(Option<&'a str>),
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
