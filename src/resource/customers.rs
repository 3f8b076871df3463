//! Customers: `GET /api/v1/oms/customers/list-simple/`. Everything customer-specific lives
//! here: the record, its parsing, and its columns in the warehouse.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::{BadRecord, Cell, Column, ColumnType, Keyed, Resource, Row, salvage};
use crate::timefmt;

pub struct Customers;

/// One customer as stored: the API's fields with timestamps in canonical UTC text, plus the
/// fields the API sent that are not modelled yet, kept as a JSON object text.
#[derive(Debug, Clone, PartialEq)]
pub struct Customer {
    pub id: i64,
    pub created_date: Option<String>,
    pub modified_date: String,
    pub omnitron_id: Option<i64>,
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub phone_number: Option<String>,
    pub erp_code: Option<String>,
    pub channel: Option<i64>,
    /// JSON object of unmodelled fields, `None` when the API sent none.
    pub extra: Option<String>,
}

impl Keyed for Customer {
    fn id(&self) -> i64 {
        self.id
    }
    fn modified_date(&self) -> &str {
        &self.modified_date
    }
}

/// The fields the API documents for a customer, in the order it writes them. The one list:
/// the fake OMS writes records from it, the parse diagnosis and the warehouse columns follow it.
pub const FIELDS: &[&str] = &[
    "id",
    "created_date",
    "modified_date",
    "omnitron_id",
    "email",
    "first_name",
    "last_name",
    "phone_number",
    "erp_code",
    "channel",
];

/// Wire shape. Unknown fields are collected, never dropped. The datetimes are `Cow` so they
/// borrow from the page text when they can and own only when JSON escapes force a copy.
#[derive(Deserialize)]
struct Wire<'a> {
    id: i64,
    #[serde(default, borrow, deserialize_with = "borrowed_opt")]
    created_date: Option<Cow<'a, str>>,
    #[serde(borrow)]
    modified_date: Cow<'a, str>,
    #[serde(default)]
    omnitron_id: Option<i64>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    first_name: Option<String>,
    #[serde(default)]
    last_name: Option<String>,
    #[serde(default)]
    phone_number: Option<String>,
    #[serde(default)]
    erp_code: Option<String>,
    #[serde(default)]
    channel: Option<i64>,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

/// A `Cow<str>` that borrows when it can. serde borrows a bare `Cow<str>` field marked
/// `borrow`, but reads `Option<Cow<str>>` as owned; going through this newtype keeps
/// `created_date` copy-free like `modified_date`.
#[derive(Deserialize)]
struct BorrowedStr<'a>(#[serde(borrow)] Cow<'a, str>);

fn borrowed_opt<'de, D>(d: D) -> Result<Option<Cow<'de, str>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    Ok(Option::<BorrowedStr<'de>>::deserialize(d)?.map(|b| b.0))
}

impl Resource for Customers {
    type Record = Customer;
    const NAME: &'static str = "customers";
    const PATH: &'static str = "/api/v1/oms/customers/list-simple/";
    const TABLE: &'static str = "customers";

    fn parse(raw: &RawValue) -> Result<Customer, BadRecord> {
        let wire: Wire<'_> = serde_json::from_str(raw.get())
            .map_err(|e| salvage(raw, diagnose(raw).unwrap_or_else(|| e.to_string())))?;
        build(raw, wire)
    }
}

fn build(raw: &RawValue, w: Wire<'_>) -> Result<Customer, BadRecord> {
    let id = w.id;
    let modified_date: &str = &w.modified_date;
    let bad = |error: String| BadRecord {
        id: Some(id),
        modified_date: timefmt::normalize(modified_date),
        raw: raw.get().to_string(),
        error,
    };
    let modified = timefmt::normalize(modified_date).ok_or_else(|| {
        bad(format!(
            "modified_date is not a datetime: {modified_date:?}"
        ))
    })?;
    let created = match w.created_date.as_deref() {
        None => None,
        Some(c) => Some(
            timefmt::normalize(c)
                .ok_or_else(|| bad(format!("created_date is not a datetime: {c:?}")))?,
        ),
    };
    let extra = if w.extra.is_empty() {
        None
    } else {
        Some(Value::Object(w.extra).to_string())
    };
    Ok(Customer {
        id,
        created_date: created,
        modified_date: modified,
        omnitron_id: w.omnitron_id,
        email: w.email,
        first_name: w.first_name,
        last_name: w.last_name,
        phone_number: w.phone_number,
        erp_code: w.erp_code,
        channel: w.channel,
        extra,
    })
}

/// Names the field that makes a record unreadable, for the quarantine's error column
/// (serde's own message gives only a column number).
fn diagnose(raw: &RawValue) -> Option<String> {
    let v: Value = serde_json::from_str(raw.get()).ok()?;
    let Some(obj) = v.as_object() else {
        return Some(format!("record is not a JSON object but {}", kind(&v)));
    };
    let problem = |field: &str, check: &Check| match obj.get(field) {
        None if check.required => Some(format!("field `{field}` is missing")),
        Some(x) if !(check.ok)(x) => Some(format!(
            "field `{field}`: expected {}, got {}",
            check.expected,
            kind(x)
        )),
        _ => None,
    };
    // Required fields first, then the optional ones by kind, each group in FIELDS order.
    CHECKS.iter().enumerate().find_map(|(group, check)| {
        FIELDS
            .iter()
            .filter(|f| field_group(f) == group)
            .find_map(|f| problem(f, check))
    })
}

/// What `diagnose` requires of one group of fields.
struct Check {
    ok: fn(&Value) -> bool,
    required: bool,
    expected: &'static str,
}

const CHECKS: [Check; 5] = [
    Check {
        ok: |x| x.is_i64(),
        required: true,
        expected: "an integer",
    },
    Check {
        ok: Value::is_string,
        required: true,
        expected: "a datetime string",
    },
    Check {
        ok: |x| x.is_null() || x.is_string(),
        required: false,
        expected: "a datetime string",
    },
    Check {
        ok: |x| x.is_null() || x.is_i64(),
        required: false,
        expected: "an integer",
    },
    Check {
        ok: |x| x.is_null() || x.is_string(),
        required: false,
        expected: "a string",
    },
];

/// Which of [`CHECKS`] a documented field gets.
fn field_group(field: &str) -> usize {
    match field {
        "id" => 0,
        "modified_date" => 1,
        "created_date" => 2,
        "omnitron_id" | "channel" => 3,
        _ => 4,
    }
}

fn kind(v: &Value) -> String {
    let shown = v.to_string();
    let shown: String = shown.chars().take(40).collect();
    let name = match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    format!("{name} {shown}")
}

impl Row for Customer {
    // The API's fields in FIELDS order, then `extra`.
    const COLUMNS: &'static [Column] = &[
        col("id", ColumnType::BigInt),
        col("created_date", ColumnType::Timestamp),
        col("modified_date", ColumnType::Timestamp),
        col("omnitron_id", ColumnType::BigInt),
        col("email", ColumnType::Text),
        col("first_name", ColumnType::Text),
        col("last_name", ColumnType::Text),
        col("phone_number", ColumnType::Text),
        col("erp_code", ColumnType::Text),
        col("channel", ColumnType::BigInt),
        col("extra", ColumnType::Json),
    ];

    fn cell(&self, i: usize) -> Cell<'_> {
        fn text(v: &Option<String>) -> Cell<'_> {
            Cell::Text(v.as_deref())
        }
        match i {
            0 => Cell::Int(Some(self.id)),
            1 => text(&self.created_date),
            2 => Cell::Text(Some(&self.modified_date)),
            3 => Cell::Int(self.omnitron_id),
            4 => text(&self.email),
            5 => text(&self.first_name),
            6 => text(&self.last_name),
            7 => text(&self.phone_number),
            8 => text(&self.erp_code),
            9 => Cell::Int(self.channel),
            _ => text(&self.extra),
        }
    }
}

const fn col(name: &'static str, ty: ColumnType) -> Column {
    Column { name, ty }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Customer, BadRecord> {
        let raw: Box<RawValue> = serde_json::from_str(s).unwrap();
        Customers::parse(&raw)
    }

    #[test]
    fn parses_the_vendor_example() {
        let c = parse(
            r#"{"id": 4, "created_date": "2023-08-16T07:46:00.912768Z",
            "modified_date": "2023-09-13T11:20:37.500200Z", "omnitron_id": 60,
            "email": "tugce.test@akinon.com", "first_name": "Tuğçe", "last_name": "Test",
            "phone_number": null, "erp_code": null, "channel": 1}"#,
        )
        .unwrap();
        assert_eq!(c.id, 4);
        assert_eq!(c.first_name.as_deref(), Some("Tuğçe"));
        assert_eq!(c.modified_date, "2023-09-13T11:20:37.500200Z");
        assert_eq!(c.phone_number, None);
        assert_eq!(c.extra, None);
    }

    #[test]
    fn unknown_fields_are_kept_and_escapes_work() {
        let c = parse(
            r#"{"id": 1, "modified_date": "2023-09-13T14:20:37.5002+03:00",
            "first_name": "\u0130pek \"q\"", "loyalty_tier": "gold", "tags": [1, 2]}"#,
        )
        .unwrap();
        assert_eq!(c.first_name.as_deref(), Some("İpek \"q\""));
        assert_eq!(c.modified_date, "2023-09-13T11:20:37.500200Z");
        let extra: Value = serde_json::from_str(c.extra.as_deref().unwrap()).unwrap();
        assert_eq!(extra["loyalty_tier"], "gold");
        assert_eq!(extra["tags"], serde_json::json!([1, 2]));
    }

    /// The borrowed wire struct must still read datetimes that JSON escapes force it to copy
    /// (this was the owned fallback's job before the two wire structs were merged).
    #[test]
    fn escaped_datetimes_parse() {
        let c = parse(
            r#"{"id": 2, "created_date": "2023-08-16T07:46:00\u002e912768Z",
            "modified_date": "2023-09-13T11:20:37\u002e5002Z"}"#,
        )
        .unwrap();
        assert_eq!(c.modified_date, "2023-09-13T11:20:37.500200Z");
        assert_eq!(
            c.created_date.as_deref(),
            Some("2023-08-16T07:46:00.912768Z")
        );
    }

    /// Unescaped datetimes are not copied (the old borrowed `&str` wire struct did not either).
    #[test]
    fn plain_datetimes_are_borrowed() {
        let text = r#"{"id": 2, "created_date": "2023-08-16T07:46:00Z", "modified_date": "2023-09-13T11:20:37Z"}"#;
        let w: Wire<'_> = serde_json::from_str(text).unwrap();
        assert!(matches!(w.created_date, Some(Cow::Borrowed(_))));
        assert!(matches!(w.modified_date, Cow::Borrowed(_)));
        let w: Wire<'_> =
            serde_json::from_str(r#"{"id": 2, "created_date": null, "modified_date": "x"}"#)
                .unwrap();
        assert!(w.created_date.is_none());
        let w: Wire<'_> = serde_json::from_str(r#"{"id": 2, "modified_date": "x"}"#).unwrap();
        assert!(w.created_date.is_none());
    }

    /// With several bad fields the error names the first in the order diagnose has always
    /// used: required, then created_date, then the integers, then the strings.
    #[test]
    fn diagnosis_order_with_several_bad_fields() {
        let e = parse(r#"{"id": 1, "modified_date": 5, "created_date": 6}"#).unwrap_err();
        assert!(e.error.contains("field `modified_date`"), "{}", e.error);
        let e =
            parse(r#"{"id": 1, "modified_date": "x", "email": 1, "channel": "w"}"#).unwrap_err();
        assert!(e.error.contains("field `channel`"), "{}", e.error);
        let e = parse(r#"{"id": 1, "modified_date": "x", "omnitron_id": "o", "created_date": 1}"#)
            .unwrap_err();
        assert!(e.error.contains("field `created_date`"), "{}", e.error);
        let e = parse(r#"{"modified_date": "x", "last_name": 2, "first_name": 3}"#).unwrap_err();
        assert!(e.error.contains("field `id` is missing"), "{}", e.error);
    }

    #[test]
    fn columns_are_the_fields_then_extra() {
        let names: Vec<&str> = Customer::COLUMNS.iter().map(|c| c.name).collect();
        assert_eq!(&names[..FIELDS.len()], FIELDS);
        assert_eq!(names[FIELDS.len()..], ["extra"]);
        let c =
            parse(r#"{"id": 9, "modified_date": "2023-09-13T11:20:37Z", "channel": 3}"#).unwrap();
        assert_eq!(c.cell(0), Cell::Int(Some(9)));
        assert_eq!(c.cell(2), Cell::Text(Some("2023-09-13T11:20:37.000000Z")));
        assert_eq!(c.cell(9), Cell::Int(Some(3)));
        assert_eq!(c.cell(10), Cell::Text(None));
    }

    #[test]
    fn bad_records_keep_what_can_be_read() {
        let e = parse(r#"{"id": 7, "modified_date": "not a date"}"#).unwrap_err();
        assert_eq!(e.id, Some(7));
        assert!(e.error.contains("modified_date"), "{}", e.error);
        let e = parse(r#"{"modified_date": "2023-09-13T11:20:37Z"}"#).unwrap_err();
        assert_eq!(e.id, None);
        assert_eq!(
            e.modified_date.as_deref(),
            Some("2023-09-13T11:20:37.000000Z")
        );
        let e = parse(r#"{"id": "x", "modified_date": "2023-09-13T11:20:37Z"}"#).unwrap_err();
        assert!(e.raw.contains("\"x\""));
        assert!(e.error.contains("field `id`"), "{}", e.error);
        let e = parse(r#"{"id": 3, "modified_date": "2023-09-13T11:20:37Z", "created_date": 17}"#)
            .unwrap_err();
        assert!(e.error.contains("field `created_date`"), "{}", e.error);
        let e =
            parse(r#"{"id": 3, "modified_date": "2023-09-13T11:20:37Z", "channel": {"id": 1}}"#)
                .unwrap_err();
        assert!(e.error.contains("field `channel`"), "{}", e.error);
        assert!(
            parse("[1]")
                .unwrap_err()
                .error
                .contains("not a JSON object")
        );
        assert!(parse(r#"[1,2]"#).is_err());
        assert!(
            parse(r#"{"id": 1, "modified_date": "2023-09-13T11:20:37Z", "channel": "web"}"#)
                .is_err()
        );
    }
}
