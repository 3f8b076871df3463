//! Generic records: the rows of any [`Resource`] the fake serves besides customers, one
//! [`FieldValue`] per described field, written to JSON in the description's order.

use chrono::{DateTime, FixedOffset, Utc};
use rand::Rng;
use rand::rngs::StdRng;
use serde_json::{Map, Value};

use crate::json::{write_datetime, write_i64, write_json_str};
use crate::resource::{Kind, Resource};
use crate::store::{Exact, Row, trunc_micros};

/// One field's value in a [`Record`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldValue {
    Null,
    Integer(i64),
    Text(String),
    Boolean(bool),
    Timestamp(DateTime<Utc>),
}

impl FieldValue {
    /// The kind of a non-null value.
    pub fn kind(&self) -> Option<Kind> {
        match self {
            FieldValue::Null => None,
            FieldValue::Integer(_) => Some(Kind::Integer),
            FieldValue::Text(_) => Some(Kind::Text),
            FieldValue::Boolean(_) => Some(Kind::Boolean),
            FieldValue::Timestamp(_) => Some(Kind::Timestamp),
        }
    }

    fn default_of(kind: Kind, modified_date: DateTime<Utc>) -> FieldValue {
        match kind {
            Kind::Integer => FieldValue::Integer(0),
            Kind::Text => FieldValue::Text(String::new()),
            Kind::Boolean => FieldValue::Boolean(false),
            Kind::Timestamp => FieldValue::Timestamp(modified_date),
        }
    }
}

impl From<i64> for FieldValue {
    fn from(v: i64) -> Self {
        FieldValue::Integer(v)
    }
}

impl From<&str> for FieldValue {
    fn from(v: &str) -> Self {
        FieldValue::Text(v.to_owned())
    }
}

impl From<String> for FieldValue {
    fn from(v: String) -> Self {
        FieldValue::Text(v)
    }
}

impl From<bool> for FieldValue {
    fn from(v: bool) -> Self {
        FieldValue::Boolean(v)
    }
}

impl From<DateTime<Utc>> for FieldValue {
    fn from(v: DateTime<Utc>) -> Self {
        FieldValue::Timestamp(v)
    }
}

impl<T: Into<FieldValue>> From<Option<T>> for FieldValue {
    fn from(v: Option<T>) -> Self {
        v.map_or(FieldValue::Null, Into::into)
    }
}

/// Why [`Record::set`] refused a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetError {
    /// The resource describes no such field.
    NoSuchField(String),
    /// The value is not of the field's kind, or null where the field is not nullable.
    WrongKind {
        field: &'static str,
        kind: Kind,
        nullable: bool,
    },
}

impl std::fmt::Display for SetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SetError::NoSuchField(name) => write!(f, "no field {name:?}"),
            SetError::WrongKind {
                field,
                kind,
                nullable,
            } => write!(
                f,
                "{field} takes a {kind:?}{}",
                if *nullable { " or null" } else { "" }
            ),
        }
    }
}

impl std::error::Error for SetError {}

/// A row of a described resource: `id` and `modified_date` (the keys every list view filters
/// and sorts on) and one value per other field.
///
/// ```
/// use fake_oms::{Field, Record, Resource};
/// static WIDGETS: Resource = Resource::new(
///     "/api/v1/oms/widgets/",
///     &[Field::integer("id"), Field::text("name"), Field::timestamp("modified_date")],
/// );
/// let t = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
/// let w = Record::new(&WIDGETS, 7, t).with("name", "gear");
/// assert_eq!(w.get("name"), Some("gear".into()));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    resource: &'static Resource,
    pub id: i64,
    pub modified_date: DateTime<Utc>,
    /// One per field of the resource, in its order; the slots of `id` and `modified_date`
    /// stay `Null` (those live in the fields above).
    values: Vec<FieldValue>,
    /// Fields the real API may add later; written after the described ones. A key that names
    /// a described field replaces that field's value in place.
    pub extra: Map<String, Value>,
    /// Written verbatim instead of the generated object (malformed-record tests). `id` and
    /// `modified_date` above still drive filtering and sorting.
    pub raw_override: Option<Value>,
}

impl Record {
    /// A record with every other field `null` where nullable, else 0, `""`, `false`, or
    /// `modified_date` (timestamps).
    pub fn new(resource: &'static Resource, id: i64, modified_date: DateTime<Utc>) -> Record {
        let values = resource
            .fields
            .iter()
            .enumerate()
            .map(|(i, f)| {
                if f.nullable
                    || i == resource.id_position()
                    || i == resource.modified_date_position()
                {
                    FieldValue::Null
                } else {
                    FieldValue::default_of(f.kind, modified_date)
                }
            })
            .collect();
        Record {
            resource,
            id,
            modified_date,
            values,
            extra: Map::new(),
            raw_override: None,
        }
    }

    pub fn resource(&self) -> &'static Resource {
        self.resource
    }

    /// Sets a field (`id` and `modified_date` included).
    pub fn set(&mut self, name: &str, value: impl Into<FieldValue>) -> Result<(), SetError> {
        let value = value.into();
        let at = self
            .resource
            .position(name)
            .ok_or_else(|| SetError::NoSuchField(name.to_owned()))?;
        let f = &self.resource.fields[at];
        let fits = match value.kind() {
            None => f.nullable,
            Some(kind) => kind == f.kind,
        };
        if !fits {
            return Err(SetError::WrongKind {
                field: f.name,
                kind: f.kind,
                nullable: f.nullable,
            });
        }
        match value {
            FieldValue::Integer(id) if at == self.resource.id_position() => self.id = id,
            FieldValue::Timestamp(t) if at == self.resource.modified_date_position() => {
                self.modified_date = t
            }
            v => self.values[at] = v,
        }
        Ok(())
    }

    /// [`Record::set`] for building records in tests.
    ///
    /// # Panics
    /// If the resource has no such field or the value does not fit it (a mistake in the test).
    pub fn with(mut self, name: &str, value: impl Into<FieldValue>) -> Record {
        if let Err(e) = self.set(name, value) {
            panic!("Record::with on {}: {e}", self.resource.path);
        }
        self
    }

    /// A field's value; `None` if the resource has no such field.
    pub fn get(&self, name: &str) -> Option<FieldValue> {
        let at = self.resource.position(name)?;
        Some(self.value(at))
    }

    fn value(&self, at: usize) -> FieldValue {
        if at == self.resource.id_position() {
            FieldValue::Integer(self.id)
        } else if at == self.resource.modified_date_position() {
            FieldValue::Timestamp(self.modified_date)
        } else {
            self.values[at].clone()
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

    /// A random value for field `at` (null now and then where nullable).
    fn random_value(&self, at: usize, rng: &mut StdRng) -> FieldValue {
        let f = &self.resource.fields[at];
        if f.nullable && rng.random_ratio(1, 8) {
            return FieldValue::Null;
        }
        match f.kind {
            Kind::Integer => FieldValue::Integer(rng.random_range(1..1_000_000)),
            Kind::Text => FieldValue::Text(format!(
                "{}-{}-{:04}",
                f.name,
                self.id,
                rng.random_range(0..10_000u32)
            )),
            Kind::Boolean => FieldValue::Boolean(rng.random_bool(0.5)),
            Kind::Timestamp => FieldValue::Timestamp(trunc_micros(
                self.modified_date - chrono::TimeDelta::microseconds(rng.random_range(0..1 << 36)),
            )),
        }
    }

    fn other_fields(&self) -> impl Iterator<Item = usize> + '_ {
        let (id_at, md_at) = (
            self.resource.id_position(),
            self.resource.modified_date_position(),
        );
        (0..self.values.len()).filter(move |&i| i != id_at && i != md_at)
    }
}

impl Row for Record {
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
        self.modified_date = trunc_micros(self.modified_date);
        for v in &mut self.values {
            if let FieldValue::Timestamp(t) = v {
                *t = trunc_micros(*t);
            }
        }
    }

    fn matches(&self, field: usize, want: &Exact) -> bool {
        match (self.value(field), want) {
            (FieldValue::Text(v), Exact::Text(w)) => v == *w,
            (FieldValue::Integer(v), Exact::Integer(w)) => v == *w,
            (FieldValue::Boolean(v), Exact::Boolean(w)) => v == *w,
            _ => false,
        }
    }

    fn write_json(&self, buf: &mut Vec<u8>, offset: Option<FixedOffset>) {
        if let Some(raw) = &self.raw_override {
            serde_json::to_writer(&mut *buf, raw).expect("writing to a Vec cannot fail");
            return;
        }
        let ex = &self.extra;
        for (i, f) in self.resource.fields.iter().enumerate() {
            buf.push(if i == 0 { b'{' } else { b',' });
            write_json_str(buf, f.name);
            buf.push(b':');
            if let Some(v) = (!ex.is_empty()).then(|| ex.get(f.name)).flatten() {
                serde_json::to_writer(&mut *buf, v).expect("writing to a Vec cannot fail");
                continue;
            }
            match self.value(i) {
                FieldValue::Null => buf.extend_from_slice(b"null"),
                FieldValue::Integer(v) => write_i64(buf, v),
                FieldValue::Text(s) => write_json_str(buf, &s),
                FieldValue::Boolean(b) => buf.extend_from_slice(if b { b"true" } else { b"false" }),
                FieldValue::Timestamp(t) => write_datetime(buf, t, offset),
            }
        }
        for (k, v) in ex {
            if self.resource.position(k).is_some() {
                continue;
            }
            buf.push(b',');
            write_json_str(buf, k);
            buf.push(b':');
            serde_json::to_writer(&mut *buf, v).expect("writing to a Vec cannot fail");
        }
        buf.push(b'}');
    }

    fn synthetic(
        resource: &'static Resource,
        rng: &mut StdRng,
        id: i64,
        created: DateTime<Utc>,
        modified: DateTime<Utc>,
    ) -> Record {
        let mut r = Record::new(resource, id, modified);
        for at in r.other_fields().collect::<Vec<_>>() {
            r.values[at] = match resource.fields[at].name {
                // The usual meaning of the name, so it reads right in a warehouse.
                "created_date" => FieldValue::Timestamp(created),
                _ => r.random_value(at, rng),
            };
        }
        r
    }

    fn edit(&mut self, rng: &mut StdRng) {
        let others: Vec<usize> = self
            .other_fields()
            .filter(|&i| self.resource.fields[i].name != "created_date")
            .collect();
        if others.is_empty() {
            return;
        }
        let at = others[rng.random_range(0..others.len())];
        self.values[at] = self.random_value(at, rng);
    }
}
