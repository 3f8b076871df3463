//! Customers: the wire description of Akinon OMS's customers list ([`CUSTOMERS`]) and the
//! typed row the fake stores for it ([`FakeCustomer`]), with the slots its hand-written JSON
//! writer fills in the description's order.

use chrono::{DateTime, FixedOffset, Utc};
use rand::Rng;
use rand::rngs::StdRng;
use serde_json::{Map, Value};

use crate::resource::{Field, Resource};
use crate::store::{Exact, Row, trunc_micros};

/// The route of Akinon OMS's customers list.
pub const CUSTOMERS_PATH: &str = "/api/v1/oms/customers/list-simple/";

/// `GET /api/v1/oms/customers/list-simple/` as the vendor documents it ("List Customers -
/// Simple"): the fields in the order of its example response, the kinds of its parameter
/// table, and the exact filters of its OPTIONS `filters` (`channel` is filtered as
/// `channel_id`). The example shows `null` for `phone_number` and `erp_code`; DRF's OPTIONS
/// metadata does not say which fields allow null, so every field but the keys and
/// `created_date` (set by the database on insert) is nullable.
pub static CUSTOMERS: Resource = Resource::new(
    CUSTOMERS_PATH,
    &[
        Field::integer("id"),
        Field::timestamp("created_date"),
        Field::timestamp("modified_date"),
        Field::integer("omnitron_id").nullable(),
        Field::text("email").nullable().exact_filter("email"),
        Field::text("first_name")
            .nullable()
            .exact_filter("first_name"),
        Field::text("last_name")
            .nullable()
            .exact_filter("last_name"),
        Field::text("phone_number")
            .nullable()
            .exact_filter("phone_number"),
        Field::text("erp_code").nullable().exact_filter("erp_code"),
        Field::integer("channel")
            .nullable()
            .exact_filter("channel_id"),
    ],
);

/// One customer row as the fake OMS stores it.
///
/// Datetimes are truncated to microseconds when a row enters the [`Store`] (like the database
/// column behind the real endpoint).
#[derive(Debug, Clone, PartialEq)]
pub struct FakeCustomer {
    pub id: i64,
    pub created_date: DateTime<Utc>,
    pub modified_date: DateTime<Utc>,
    pub omnitron_id: Option<i64>,
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub phone_number: Option<String>,
    pub erp_code: Option<String>,
    pub channel: Option<i64>,
    /// Fields the real API may add later; written after the documented ones. A key that names
    /// a documented field replaces that field's value in place.
    pub extra: Map<String, Value>,
    /// Emitted verbatim instead of the generated object (malformed-record tests). `id` and
    /// `modified_date` above still drive filtering and sorting.
    pub raw_override: Option<Value>,
}

const FIRST: [&str; 8] = [
    "Ali", "İpek", "Ahmet", "Tuğçe", "Veli", "Zeynep", "Şükrü", "Çağla",
];
const LAST: [&str; 6] = ["Yılmaz", "Öztürk", "Güneş", "Kaya", "Demir", "Test"];

impl FakeCustomer {
    /// A plausible customer: `customer{id}@example.com`, a Turkish name picked by id, a phone
    /// number, channel 1, `omnitron_id = id + 1000`, `created_date = modified_date`.
    pub fn new(id: i64, modified_date: DateTime<Utc>) -> Self {
        let k = id.unsigned_abs() as usize;
        FakeCustomer {
            id,
            created_date: modified_date,
            modified_date,
            omnitron_id: Some(id + 1000),
            email: Some(format!("customer{id}@example.com")),
            first_name: Some(FIRST[k % FIRST.len()].to_string()),
            last_name: Some(LAST[k % LAST.len()].to_string()),
            phone_number: Some(format!("05{:09}", k % 1_000_000_000)),
            erp_code: None,
            channel: Some(1),
            extra: Map::new(),
            raw_override: None,
        }
    }

    /// Sets `raw_override`: the server writes `raw` instead of the generated object.
    pub fn with_raw(mut self, raw: Value) -> Self {
        self.raw_override = Some(raw);
        self
    }

    /// Adds (or replaces) an extra field.
    pub fn with_extra(mut self, key: impl Into<String>, value: Value) -> Self {
        self.extra.insert(key.into(), value);
        self
    }
}

impl Row for FakeCustomer {
    fn id(&self) -> i64 {
        self.id
    }

    fn modified_date(&self) -> DateTime<Utc> {
        self.modified_date
    }

    fn set_id(&mut self, id: i64) {
        self.id = id;
    }

    fn set_modified_date(&mut self, t: DateTime<Utc>) {
        self.modified_date = t;
    }

    fn normalize(&mut self) {
        self.created_date = trunc_micros(self.created_date);
        self.modified_date = trunc_micros(self.modified_date);
    }

    fn matches(&self, field: usize, want: &Exact) -> bool {
        let text = |v: &Option<String>| match want {
            Exact::Text(w) => v.as_deref() == Some(w.as_str()),
            _ => false,
        };
        let int = |v: Option<i64>| matches!(want, Exact::Integer(w) if v == Some(*w));
        match crate::json::slot(field) {
            Some(Slot::Id) => int(Some(self.id)),
            Some(Slot::OmnitronId) => int(self.omnitron_id),
            Some(Slot::Channel) => int(self.channel),
            Some(Slot::Email) => text(&self.email),
            Some(Slot::FirstName) => text(&self.first_name),
            Some(Slot::LastName) => text(&self.last_name),
            Some(Slot::PhoneNumber) => text(&self.phone_number),
            Some(Slot::ErpCode) => text(&self.erp_code),
            Some(Slot::CreatedDate | Slot::ModifiedDate) | None => false,
        }
    }

    fn write_json(&self, buf: &mut Vec<u8>, offset: Option<FixedOffset>) {
        crate::json::write_customer(buf, self, offset);
    }

    fn synthetic(
        _: &'static Resource,
        rng: &mut StdRng,
        id: i64,
        created: DateTime<Utc>,
        modified: DateTime<Utc>,
    ) -> FakeCustomer {
        crate::data::person(
            rng,
            id,
            created.timestamp_micros(),
            modified.timestamp_micros(),
        )
    }

    /// A new phone number.
    fn edit(&mut self, rng: &mut StdRng) {
        self.phone_number = Some(format!("05{:09}", rng.random_range(0..1_000_000_000u32)));
    }
}

/// Where a [`CUSTOMERS`] field's value is in a [`FakeCustomer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
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

impl Slot {
    /// The slot of a wire field; `None` for a field the struct does not hold.
    pub(crate) fn of(name: &str) -> Option<Slot> {
        Some(match name {
            "id" => Slot::Id,
            "created_date" => Slot::CreatedDate,
            "modified_date" => Slot::ModifiedDate,
            "omnitron_id" => Slot::OmnitronId,
            "email" => Slot::Email,
            "first_name" => Slot::FirstName,
            "last_name" => Slot::LastName,
            "phone_number" => Slot::PhoneNumber,
            "erp_code" => Slot::ErpCode,
            "channel" => Slot::Channel,
            _ => return None,
        })
    }
}
