//! Customers: `GET /api/v1/oms/customers/list-simple/`. Everything customer-specific lives
//! here: the record, its parsing, and its columns in the warehouse.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::{BadRecord, Cell, Column, ColumnType, Keyed, Resource, Row, salvage};
use crate::timefmt;

pub struct Customers;

/// One customer as stored: the API's fields with timestamps in canonical UTC text, plus the
/// fields the API sent that are not modelled yet, kept as a JSON object text.
///
/// The integers are plain fields; the text fields live in one allocation, read through
/// accessors: a record's strings are allocated and freed once instead of once each, which was
/// the largest cost of parsing a page (about a third of it went to the allocator). Build one
/// with [`Customer::new`].
#[derive(Clone, PartialEq, Eq)]
pub struct Customer {
    pub id: i64,
    pub omnitron_id: Option<i64>,
    pub channel: Option<i64>,
    text: Texts,
}

/// The fields of a [`Customer`], the text borrowed: what [`Customer::new`] copies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CustomerFields<'a> {
    pub id: i64,
    pub created_date: Option<&'a str>,
    pub modified_date: &'a str,
    pub omnitron_id: Option<i64>,
    pub email: Option<&'a str>,
    pub first_name: Option<&'a str>,
    pub last_name: Option<&'a str>,
    pub phone_number: Option<&'a str>,
    pub erp_code: Option<&'a str>,
    pub channel: Option<i64>,
    /// JSON object of unmodelled fields, `None` when the API sent none.
    pub extra: Option<&'a str>,
}

/// The text fields in [`Texts`] order.
const CREATED: usize = 0;
const MODIFIED: usize = 1;
const EMAIL: usize = 2;
const FIRST_NAME: usize = 3;
const LAST_NAME: usize = 4;
const PHONE_NUMBER: usize = 5;
const ERP_CODE: usize = 6;
const EXTRA: usize = 7;
const TEXTS: usize = 8;

/// Optional strings back to back in one buffer, always in field order, so equal fields give
/// equal values (derived equality is the fields' equality).
#[derive(Clone, PartialEq, Eq)]
struct Texts {
    buf: Box<str>,
    /// Where each field ends in `buf`; it starts where the previous one ends.
    ends: [usize; TEXTS],
    /// Bit `i` set: field `i` is present (`Some`), possibly empty.
    present: u8,
}

impl Texts {
    fn new(fields: [Option<&str>; TEXTS]) -> Texts {
        let mut buf = String::with_capacity(fields.iter().flatten().map(|f| f.len()).sum());
        let mut ends = [0; TEXTS];
        let mut present = 0u8;
        for (i, f) in fields.iter().enumerate() {
            if let Some(f) = f {
                buf.push_str(f);
                present |= 1 << i;
            }
            ends[i] = buf.len();
        }
        Texts {
            buf: buf.into_boxed_str(),
            ends,
            present,
        }
    }

    fn get(&self, i: usize) -> Option<&str> {
        if self.present & (1 << i) == 0 {
            return None;
        }
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        self.buf.get(start..self.ends[i])
    }
}

impl Customer {
    pub fn new(f: CustomerFields<'_>) -> Customer {
        Customer {
            id: f.id,
            omnitron_id: f.omnitron_id,
            channel: f.channel,
            text: Texts::new([
                f.created_date,
                Some(f.modified_date),
                f.email,
                f.first_name,
                f.last_name,
                f.phone_number,
                f.erp_code,
                f.extra,
            ]),
        }
    }

    /// The fields, borrowed: to build a changed copy (`Customer::new(CustomerFields { .. })`).
    pub fn fields(&self) -> CustomerFields<'_> {
        CustomerFields {
            id: self.id,
            created_date: self.created_date(),
            modified_date: self.modified_date(),
            omnitron_id: self.omnitron_id,
            email: self.email(),
            first_name: self.first_name(),
            last_name: self.last_name(),
            phone_number: self.phone_number(),
            erp_code: self.erp_code(),
            channel: self.channel,
            extra: self.extra(),
        }
    }

    pub fn created_date(&self) -> Option<&str> {
        self.text.get(CREATED)
    }
    pub fn modified_date(&self) -> &str {
        self.text.get(MODIFIED).unwrap_or_default()
    }
    pub fn email(&self) -> Option<&str> {
        self.text.get(EMAIL)
    }
    pub fn first_name(&self) -> Option<&str> {
        self.text.get(FIRST_NAME)
    }
    pub fn last_name(&self) -> Option<&str> {
        self.text.get(LAST_NAME)
    }
    pub fn phone_number(&self) -> Option<&str> {
        self.text.get(PHONE_NUMBER)
    }
    pub fn erp_code(&self) -> Option<&str> {
        self.text.get(ERP_CODE)
    }
    /// JSON object of unmodelled fields, `None` when the API sent none.
    pub fn extra(&self) -> Option<&str> {
        self.text.get(EXTRA)
    }
}

// Shown as its fields, as a plain struct would be, so test failures read the same.
impl fmt::Debug for Customer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.fields();
        f.debug_struct("Customer")
            .field("id", &c.id)
            .field("created_date", &c.created_date)
            .field("modified_date", &c.modified_date)
            .field("omnitron_id", &c.omnitron_id)
            .field("email", &c.email)
            .field("first_name", &c.first_name)
            .field("last_name", &c.last_name)
            .field("phone_number", &c.phone_number)
            .field("erp_code", &c.erp_code)
            .field("channel", &c.channel)
            .field("extra", &c.extra)
            .finish()
    }
}

impl Keyed for Customer {
    fn id(&self) -> i64 {
        self.id
    }
    fn modified_date(&self) -> &str {
        Customer::modified_date(self)
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

/// Wire shape. Unknown fields are collected, never dropped. The strings are `Cow` so they
/// borrow from the page text when they can and own only when JSON escapes force a copy: a
/// record's text is copied once, into its [`Customer`].
/// Deserialized by hand ([`WireVisitor`]): `#[serde(flatten)]` buffered every field of every
/// record into serde's intermediate `Content`, which dominated the client's parse cost.
struct Wire<'a> {
    id: i64,
    created_date: Option<Cow<'a, str>>,
    modified_date: Cow<'a, str>,
    omnitron_id: Option<i64>,
    email: Option<Cow<'a, str>>,
    first_name: Option<Cow<'a, str>>,
    last_name: Option<Cow<'a, str>>,
    phone_number: Option<Cow<'a, str>>,
    erp_code: Option<Cow<'a, str>>,
    channel: Option<i64>,
    extra: Map<String, Value>,
}

/// A `Cow<str>` that borrows when it can. serde borrows a bare `Cow<str>` field marked
/// `borrow`, but reads `Cow<str>` (and `Option<Cow<str>>`) as owned elsewhere; going through
/// this newtype keeps the strings copy-free.
#[derive(Deserialize)]
struct BorrowedStr<'a>(#[serde(borrow)] Cow<'a, str>);

/// A documented field ([`FIELDS`]), for code that dispatches on one without matching its name
/// as a string per record: the parser here and the fake OMS's writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    Id,
    CreatedDate,
    ModifiedDate,
    OmnitronId,
    Email,
    FirstName,
    LastName,
    PhoneNumber,
    ErpCode,
    Channel,
}

impl Field {
    pub(crate) fn of(name: &str) -> Option<Field> {
        Some(match name {
            "id" => Field::Id,
            "created_date" => Field::CreatedDate,
            "modified_date" => Field::ModifiedDate,
            "omnitron_id" => Field::OmnitronId,
            "email" => Field::Email,
            "first_name" => Field::FirstName,
            "last_name" => Field::LastName,
            "phone_number" => Field::PhoneNumber,
            "erp_code" => Field::ErpCode,
            "channel" => Field::Channel,
            _ => return None,
        })
    }
}

/// A key of the wire object: a documented field, or any other name (kept for `extra`).
enum Key {
    Known(Field),
    Other(String),
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            // Documented names are matched without allocating; only other names are copied.
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(Field::of(v).map_or_else(|| Key::Other(v.to_owned()), Key::Known))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Key, E> {
                Ok(Field::of(&v).map_or(Key::Other(v), Key::Known))
            }
        }
        d.deserialize_identifier(KeyVisitor)
    }
}

impl<'de> Deserialize<'de> for Wire<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Wire<'de>, D::Error> {
        d.deserialize_map(WireVisitor)
    }
}

/// Reads a JSON object the way the derived code with `flatten` did: a repeated documented field
/// is an error, a repeated other field keeps its last value, `id` and `modified_date` are
/// required (checked in declaration order), anything but an object is an error.
struct WireVisitor;

impl<'de> Visitor<'de> for WireVisitor {
    type Value = Wire<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("struct Wire")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Wire<'de>, A::Error> {
        let mut id: Option<i64> = None;
        let mut created_date: Option<Option<BorrowedStr<'de>>> = None;
        let mut modified_date: Option<BorrowedStr<'de>> = None;
        let mut omnitron_id: Option<Option<i64>> = None;
        let mut email: Option<Option<BorrowedStr<'de>>> = None;
        let mut first_name: Option<Option<BorrowedStr<'de>>> = None;
        let mut last_name: Option<Option<BorrowedStr<'de>>> = None;
        let mut phone_number: Option<Option<BorrowedStr<'de>>> = None;
        let mut erp_code: Option<Option<BorrowedStr<'de>>> = None;
        let mut channel: Option<Option<i64>> = None;
        let mut extra = Map::new();
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Known(Field::Id) => fill(&mut map, &mut id, "id")?,
                Key::Known(Field::CreatedDate) => {
                    fill(&mut map, &mut created_date, "created_date")?
                }
                Key::Known(Field::ModifiedDate) => {
                    fill(&mut map, &mut modified_date, "modified_date")?
                }
                Key::Known(Field::OmnitronId) => fill(&mut map, &mut omnitron_id, "omnitron_id")?,
                Key::Known(Field::Email) => fill(&mut map, &mut email, "email")?,
                Key::Known(Field::FirstName) => fill(&mut map, &mut first_name, "first_name")?,
                Key::Known(Field::LastName) => fill(&mut map, &mut last_name, "last_name")?,
                Key::Known(Field::PhoneNumber) => {
                    fill(&mut map, &mut phone_number, "phone_number")?
                }
                Key::Known(Field::ErpCode) => fill(&mut map, &mut erp_code, "erp_code")?,
                Key::Known(Field::Channel) => fill(&mut map, &mut channel, "channel")?,
                Key::Other(name) => {
                    let value: Value = map.next_value()?;
                    extra.insert(name, value);
                }
            }
        }
        let id = id.ok_or_else(|| de::Error::missing_field("id"))?;
        let modified_date =
            modified_date.ok_or_else(|| de::Error::missing_field("modified_date"))?;
        Ok(Wire {
            id,
            created_date: created_date.flatten().map(|b| b.0),
            modified_date: modified_date.0,
            omnitron_id: omnitron_id.flatten(),
            email: email.flatten().map(|b| b.0),
            first_name: first_name.flatten().map(|b| b.0),
            last_name: last_name.flatten().map(|b| b.0),
            phone_number: phone_number.flatten().map(|b| b.0),
            erp_code: erp_code.flatten().map(|b| b.0),
            channel: channel.flatten(),
            extra,
        })
    }
}

/// Reads the value of a documented field into its slot; a second occurrence is an error, raised
/// before its value is read (where the derived code raised it, so the message is unchanged).
fn fill<'de, A, T>(map: &mut A, slot: &mut Option<T>, name: &'static str) -> Result<(), A::Error>
where
    A: MapAccess<'de>,
    T: Deserialize<'de>,
{
    if slot.is_some() {
        return Err(de::Error::duplicate_field(name));
    }
    *slot = Some(map.next_value()?);
    Ok(())
}

impl Resource for Customers {
    type Record = Customer;
    const NAME: &'static str = "customers";
    const PATH: &'static str = "/api/v1/oms/customers/list-simple/";
    const TABLE: &'static str = "customers";

    fn parse(raw: &RawValue) -> Result<Customer, BadRecord> {
        let wire: Wire<'_> = serde_json::from_str(raw.get())
            .map_err(|e| salvage(raw, diagnose(raw).unwrap_or_else(|| e.to_string())))?;
        let (id, modified_date) = (wire.id, wire.modified_date.clone());
        build(wire).map_err(|error| BadRecord {
            id: Some(id),
            modified_date: timefmt::normalize(&modified_date).map(Cow::into_owned),
            raw: raw.get().to_string(),
            error,
        })
    }

    fn read<'de, D: Deserializer<'de>>(d: D) -> Result<Customer, D::Error> {
        build(Wire::deserialize(d)?).map_err(de::Error::custom)
    }
}

/// The stored record of a wire record, or why it cannot be stored.
fn build(w: Wire<'_>) -> Result<Customer, String> {
    let modified_date: &str = &w.modified_date;
    let modified = timefmt::normalize(modified_date)
        .ok_or_else(|| format!("modified_date is not a datetime: {modified_date:?}"))?;
    let created = match w.created_date.as_deref() {
        None => None,
        Some(c) => Some(
            timefmt::normalize(c)
                .ok_or_else(|| format!("created_date is not a datetime: {c:?}"))?,
        ),
    };
    let extra = if w.extra.is_empty() {
        None
    } else {
        Some(Value::Object(w.extra).to_string())
    };
    Ok(Customer::new(CustomerFields {
        id: w.id,
        created_date: created.as_deref(),
        modified_date: &modified,
        omnitron_id: w.omnitron_id,
        email: w.email.as_deref(),
        first_name: w.first_name.as_deref(),
        last_name: w.last_name.as_deref(),
        phone_number: w.phone_number.as_deref(),
        erp_code: w.erp_code.as_deref(),
        channel: w.channel,
        extra: extra.as_deref(),
    }))
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
        match i {
            0 => Cell::Int(Some(self.id)),
            1 => Cell::Text(self.text.get(CREATED)),
            2 => Cell::Text(self.text.get(MODIFIED)),
            3 => Cell::Int(self.omnitron_id),
            4 => Cell::Text(self.text.get(EMAIL)),
            5 => Cell::Text(self.text.get(FIRST_NAME)),
            6 => Cell::Text(self.text.get(LAST_NAME)),
            7 => Cell::Text(self.text.get(PHONE_NUMBER)),
            8 => Cell::Text(self.text.get(ERP_CODE)),
            9 => Cell::Int(self.channel),
            _ => Cell::Text(self.text.get(EXTRA)),
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

    fn text() -> impl proptest::strategy::Strategy<Value = Option<String>> {
        proptest::option::of("(|[a-zé\"ğ ]{1,12})")
    }

    proptest::proptest! {
        /// The one text buffer gives back each field as given: absent and empty stay apart,
        /// neighbours do not bleed into each other, and equality is equality of the fields.
        #[test]
        fn text_fields_come_back_as_given(
            t in proptest::collection::vec(text(), 7),
            md in "[0-9:TZ.-]{0,27}",
            ints in proptest::array::uniform3(proptest::option::of(proptest::num::i64::ANY)),
        ) {
            let f = CustomerFields {
                id: ints[0].unwrap_or(1),
                created_date: t[0].as_deref(),
                modified_date: &md,
                omnitron_id: ints[1],
                email: t[1].as_deref(),
                first_name: t[2].as_deref(),
                last_name: t[3].as_deref(),
                phone_number: t[4].as_deref(),
                erp_code: t[5].as_deref(),
                channel: ints[2],
                extra: t[6].as_deref(),
            };
            let c = Customer::new(f);
            proptest::prop_assert_eq!(c.fields(), f);
            proptest::prop_assert_eq!(c.clone(), Customer::new(c.fields()));
            // Moving one field's text to its neighbour keeps the buffer's bytes but must not
            // compare equal.
            if let Some(email) = f.email.filter(|e| !e.is_empty()) {
                let moved = Customer::new(CustomerFields {
                    email: Some(""),
                    first_name: Some(&format!("{email}{}", f.first_name.unwrap_or(""))),
                    ..f
                });
                proptest::prop_assert_ne!(&moved, &c);
            }
            let cells: Vec<Cell<'_>> = (0..Customer::COLUMNS.len()).map(|i| c.cell(i)).collect();
            proptest::prop_assert_eq!(&cells[1], &Cell::Text(f.created_date));
            proptest::prop_assert_eq!(&cells[2], &Cell::Text(Some(&md)));
            proptest::prop_assert_eq!(&cells[4], &Cell::Text(f.email));
            proptest::prop_assert_eq!(&cells[8], &Cell::Text(f.erp_code));
            proptest::prop_assert_eq!(&cells[10], &Cell::Text(f.extra));
        }
    }

    #[test]
    fn absent_and_empty_text_differ() {
        let base = CustomerFields {
            id: 1,
            modified_date: "2023-09-13T11:20:37.500200Z",
            ..CustomerFields::default()
        };
        let empty = Customer::new(CustomerFields {
            email: Some(""),
            ..base
        });
        let absent = Customer::new(base);
        assert_eq!(empty.email(), Some(""));
        assert_eq!(absent.email(), None);
        assert_ne!(empty, absent);
        assert_eq!(
            format!("{absent:?}"),
            "Customer { id: 1, created_date: None, modified_date: \"2023-09-13T11:20:37.500200Z\", \
             omnitron_id: None, email: None, first_name: None, last_name: None, \
             phone_number: None, erp_code: None, channel: None, extra: None }"
        );
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
        assert_eq!(c.first_name(), Some("Tuğçe"));
        assert_eq!(c.modified_date(), "2023-09-13T11:20:37.500200Z");
        assert_eq!(c.phone_number(), None);
        assert_eq!(c.extra(), None);
    }

    #[test]
    fn unknown_fields_are_kept_and_escapes_work() {
        let c = parse(
            r#"{"id": 1, "modified_date": "2023-09-13T14:20:37.5002+03:00",
            "first_name": "\u0130pek \"q\"", "loyalty_tier": "gold", "tags": [1, 2]}"#,
        )
        .unwrap();
        assert_eq!(c.first_name(), Some("İpek \"q\""));
        assert_eq!(c.modified_date(), "2023-09-13T11:20:37.500200Z");
        let extra: Value = serde_json::from_str(c.extra().unwrap()).unwrap();
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
        assert_eq!(c.modified_date(), "2023-09-13T11:20:37.500200Z");
        assert_eq!(c.created_date(), Some("2023-08-16T07:46:00.912768Z"));
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

    /// What the derived `flatten` struct did with repeated keys, kept: a documented field twice
    /// is a bad record with serde's message (diagnose reads the last value and finds nothing
    /// wrong), an undocumented one keeps its last value.
    #[test]
    fn repeated_fields() {
        let e =
            parse(r#"{"id": 1, "modified_date": "2023-09-13T11:20:37Z", "id": 2}"#).unwrap_err();
        assert_eq!(e.error, "duplicate field `id` at line 1 column 55");
        assert_eq!(e.id, Some(2));
        let e =
            parse(r#"{"id": 1, "email": null, "email": "a", "modified_date": "x"}"#).unwrap_err();
        assert!(
            e.error.starts_with("duplicate field `email`"),
            "{}",
            e.error
        );
        let c = parse(r#"{"id": 1, "modified_date": "2023-09-13T11:20:37Z", "zz": 1, "zz": 2}"#)
            .unwrap();
        assert_eq!(c.extra(), Some(r#"{"zz":2}"#));
    }

    /// Names are matched after unescaping, and every documented field has its own slot (none
    /// would silently land in `extra`).
    #[test]
    fn keys_are_read_by_name() {
        let c = parse(r#"{"i\u0064": 3, "modified_date": "2023-09-13T11:20:37Z", "z\u007a": 1}"#)
            .unwrap();
        assert_eq!(c.id, 3);
        assert_eq!(c.extra(), Some(r#"{"zz":1}"#));
        for f in FIELDS {
            assert!(Field::of(f).is_some(), "{f}");
        }
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
