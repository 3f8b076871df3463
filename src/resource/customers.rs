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
                return parse_owned(raw).unwrap_or_else(|| Err(salvage(raw, e.to_string())));
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
        assert!(parse(r#"[1,2]"#).is_err());
        assert!(
            parse(r#"{"id": 1, "modified_date": "2023-09-13T11:20:37Z", "channel": "web"}"#)
                .is_err()
        );
    }
}
