//! Customers: `GET /api/v1/oms/customers/list-simple/`. Everything customer-specific lives
//! here: the record, its parsing, and its columns in the warehouse.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::{BadRecord, Keyed, Resource, salvage};
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

/// Wire shape. Unknown fields are collected, never dropped.
#[derive(Deserialize)]
struct Wire<'a> {
    id: i64,
    #[serde(default, borrow)]
    created_date: Option<&'a str>,
    #[serde(borrow)]
    modified_date: &'a str,
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

impl Resource for Customers {
    type Record = Customer;
    const NAME: &'static str = "customers";
    const PATH: &'static str = "/api/v1/oms/customers/list-simple/";
    const TABLE: &'static str = "customers";

    fn parse(raw: &RawValue) -> Result<Customer, BadRecord> {
        // Borrowed &str fails on escaped strings; fall back to an owned parse for those.
        let wire: Wire<'_> = match serde_json::from_str(raw.get()) {
            Ok(w) => w,
            Err(e) => {
                return parse_owned(raw).unwrap_or_else(|| {
                    Err(salvage(raw, diagnose(raw).unwrap_or_else(|| e.to_string())))
                });
            }
        };
        build(
            raw,
            wire.id,
            wire.created_date,
            wire.modified_date,
            wire.omnitron_id,
            [
                wire.email,
                wire.first_name,
                wire.last_name,
                wire.phone_number,
                wire.erp_code,
            ],
            wire.channel,
            wire.extra,
        )
    }
}

#[derive(Deserialize)]
struct OwnedWire {
    id: i64,
    #[serde(default)]
    created_date: Option<String>,
    modified_date: String,
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

/// `None` means the owned parse failed too; the caller reports the first error.
fn parse_owned(raw: &RawValue) -> Option<Result<Customer, BadRecord>> {
    let w: OwnedWire = serde_json::from_str(raw.get()).ok()?;
    Some(build(
        raw,
        w.id,
        w.created_date.as_deref(),
        &w.modified_date,
        w.omnitron_id,
        [
            w.email,
            w.first_name,
            w.last_name,
            w.phone_number,
            w.erp_code,
        ],
        w.channel,
        w.extra,
    ))
}

#[allow(clippy::too_many_arguments)]
fn build(
    raw: &RawValue,
    id: i64,
    created_date: Option<&str>,
    modified_date: &str,
    omnitron_id: Option<i64>,
    strings: [Option<String>; 5],
    channel: Option<i64>,
    extra: Map<String, Value>,
) -> Result<Customer, BadRecord> {
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
    let created = match created_date {
        None => None,
        Some(c) => Some(
            timefmt::normalize(c)
                .ok_or_else(|| bad(format!("created_date is not a datetime: {c:?}")))?,
        ),
    };
    let [email, first_name, last_name, phone_number, erp_code] = strings;
    let extra = if extra.is_empty() {
        None
    } else {
        Some(Value::Object(extra).to_string())
    };
    Ok(Customer {
        id,
        created_date: created,
        modified_date: modified,
        omnitron_id,
        email,
        first_name,
        last_name,
        phone_number,
        erp_code,
        channel,
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
    let want = |field: &str, ok: fn(&Value) -> bool, required: bool, expected: &str| match obj
        .get(field)
    {
        None if required => Some(format!("field `{field}` is missing")),
        Some(x) if !ok(x) => Some(format!(
            "field `{field}`: expected {expected}, got {}",
            kind(x)
        )),
        _ => None,
    };
    let int = |x: &Value| x.is_i64();
    let opt_int = |x: &Value| x.is_null() || x.is_i64();
    let text = |x: &Value| x.is_string();
    let opt_text = |x: &Value| x.is_null() || x.is_string();
    want("id", int, true, "an integer")
        .or_else(|| want("modified_date", text, true, "a datetime string"))
        .or_else(|| want("created_date", opt_text, false, "a datetime string"))
        .or_else(|| want("omnitron_id", opt_int, false, "an integer"))
        .or_else(|| want("channel", opt_int, false, "an integer"))
        .or_else(|| {
            [
                "email",
                "first_name",
                "last_name",
                "phone_number",
                "erp_code",
            ]
            .into_iter()
            .find_map(|f| want(f, opt_text, false, "a string"))
        })
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

impl crate::warehouse::sqlite::SqliteRecord for Customer {
    const COLUMNS: &'static [&'static str] = &[
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
        "extra",
    ];

    fn bind(&self, stmt: &mut rusqlite::Statement<'_>) -> rusqlite::Result<()> {
        stmt.raw_bind_parameter(1, self.id)?;
        stmt.raw_bind_parameter(2, &self.created_date)?;
        stmt.raw_bind_parameter(3, &self.modified_date)?;
        stmt.raw_bind_parameter(4, self.omnitron_id)?;
        stmt.raw_bind_parameter(5, &self.email)?;
        stmt.raw_bind_parameter(6, &self.first_name)?;
        stmt.raw_bind_parameter(7, &self.last_name)?;
        stmt.raw_bind_parameter(8, &self.phone_number)?;
        stmt.raw_bind_parameter(9, &self.erp_code)?;
        stmt.raw_bind_parameter(10, self.channel)?;
        stmt.raw_bind_parameter(11, &self.extra)?;
        Ok(())
    }
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
