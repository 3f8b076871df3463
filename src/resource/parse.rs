//! The one parser of every declared resource: a JSON object read field by field straight
//! into a [`Record`]'s slots (no `serde_json::Value` detour), strings borrowed from the page
//! text where JSON escapes allow, instants checked and normalised, undeclared fields kept in
//! `extra`; and, for a record that cannot be stored, the name of the field at fault.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::record::{Declared, Record, Texts};
use super::{BadRecord, Column, ColumnType};
use crate::timefmt;

/// A `Cow<str>` that borrows when it can. serde borrows a bare `Cow<str>` field marked
/// `borrow`, but reads `Cow<str>` (and `Option<Cow<str>>`) as owned elsewhere; going through
/// this newtype keeps the strings copy-free.
#[derive(Deserialize)]
struct BorrowedStr<'a>(#[serde(borrow)] Cow<'a, str>);

/// A record as read from the wire, before its instants are checked and normalised.
struct Wire<'de, const NI: usize, const NT: usize> {
    id: i64,
    ints: [Option<i64>; NI],
    texts: [Option<Cow<'de, str>>; NT],
    extra: Map<String, Value>,
}

/// A key of the wire object: a declared field (its column), or any other name (for `extra`).
enum Key {
    Known(usize),
    Other(String),
}

/// Reads a key, matching the declared names without allocating; only other names are copied.
/// The API writes its fields in declaration order, so the field after the last one matched
/// (`next`) is tried first: nearly every key is found by one comparison.
struct KeySeed {
    fields: &'static [Column],
    next: usize,
}

impl KeySeed {
    fn find(&self, v: &str) -> Option<usize> {
        match self.fields.get(self.next) {
            Some(c) if same(c.name, v) => Some(self.next),
            _ => self.fields.iter().position(|c| same(c.name, v)),
        }
    }
}

/// `a == b` for field names, without a call to `memcmp` for the short ones (most are 2 to 16
/// bytes): two overlapping 8-byte loads each. Names are compared once per key of every record.
#[inline]
fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word = |s: &[u8], at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&s[at..at + 8]);
        u64::from_ne_bytes(w)
    };
    match n {
        8..=16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
        _ => a == b,
    }
}

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Key;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Key, D::Error> {
        d.deserialize_identifier(self)
    }
}

impl Visitor<'_> for KeySeed {
    type Value = Key;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
        Ok(match self.find(v) {
            Some(i) => Key::Known(i),
            None => Key::Other(v.to_owned()),
        })
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Key, E> {
        Ok(match self.find(&v) {
            Some(i) => Key::Known(i),
            None => Key::Other(v),
        })
    }
}

/// Reads a JSON object the way a derived struct with a `flatten`ed map would: a repeated
/// declared field is an error (raised before its value is read), a repeated other field keeps
/// its last value, required fields are checked in declaration order, anything but an object is
/// an error.
struct WireSeed<M, const NI: usize, const NT: usize>(PhantomData<fn() -> M>);

impl<'de, M: Declared, const NI: usize, const NT: usize> DeserializeSeed<'de>
    for WireSeed<M, NI, NT>
{
    type Value = Wire<'de, NI, NT>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, M: Declared, const NI: usize, const NT: usize> Visitor<'de> for WireSeed<M, NI, NT> {
    type Value = Wire<'de, NI, NT>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("struct Wire")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let fields = &M::COLUMNS[..M::COLUMNS.len() - 1];
        let mut seen = 0u64;
        let mut id = 0;
        let mut ints = [None; NI];
        let mut texts: [Option<Cow<'de, str>>; NT] = std::array::from_fn(|_| None);
        let mut extra = Map::new();
        let mut next = 0;
        while let Some(key) = map.next_key_seed(KeySeed { fields, next })? {
            let i = match key {
                Key::Known(i) => i,
                Key::Other(name) => {
                    let value: Value = map.next_value()?;
                    extra.insert(name, value);
                    continue;
                }
            };
            let col = &fields[i];
            if seen & (1 << i) != 0 {
                return Err(de::Error::duplicate_field(col.name));
            }
            seen |= 1 << i;
            next = i + 1;
            let slot = M::SLOTS[i] as usize;
            match (col.ty, col.nullable) {
                (ColumnType::BigInt, _) if i == 0 => id = map.next_value::<i64>()?,
                (ColumnType::BigInt, true) => ints[slot] = map.next_value::<Option<i64>>()?,
                (ColumnType::BigInt, false) => ints[slot] = Some(map.next_value::<i64>()?),
                (ColumnType::Bool, true) => {
                    ints[slot] = map.next_value::<Option<bool>>()?.map(i64::from)
                }
                (ColumnType::Bool, false) => ints[slot] = Some(map.next_value::<bool>()?.into()),
                (_, true) => {
                    texts[slot] = map.next_value::<Option<BorrowedStr<'de>>>()?.map(|b| b.0)
                }
                (_, false) => texts[slot] = Some(map.next_value::<BorrowedStr<'de>>()?.0),
            }
        }
        if seen & M::REQUIRED != M::REQUIRED
            && let Some(missing) = fields
                .iter()
                .enumerate()
                .find(|(i, c)| !c.nullable && seen & (1 << i) == 0)
        {
            return Err(de::Error::missing_field(missing.1.name));
        }
        Ok(Wire {
            id,
            ints,
            texts,
            extra,
        })
    }
}

/// The stored record of a wire record, or why it cannot be stored.
fn build<M: Declared, const NI: usize, const NT: usize>(
    mut w: Wire<'_, NI, NT>,
) -> Result<Record<M, NI, NT>, String> {
    // The cursor first, then the other instants in declaration order.
    let others = M::INSTANTS & !(1 << M::CURSOR);
    let instants = std::iter::once(M::CURSOR)
        .chain((1..M::COLUMNS.len() - 1).filter(|&i| others & (1 << i) != 0));
    for i in instants {
        let slot = M::SLOTS[i] as usize;
        let owned = match w.texts[slot].as_deref() {
            None => None,
            Some(v) => match timefmt::normalize(v) {
                None => {
                    return Err(format!("{} is not a datetime: {v:?}", M::COLUMNS[i].name));
                }
                Some(Cow::Borrowed(_)) => None,
                Some(Cow::Owned(s)) => Some(s),
            },
        };
        if let Some(s) = owned {
            w.texts[slot] = Some(Cow::Owned(s));
        }
    }
    if !w.extra.is_empty() {
        w.texts[NT - 1] = Some(Cow::Owned(Value::Object(w.extra).to_string()));
    }
    Ok(Record::from_parts(
        w.id,
        w.ints,
        Texts::new(w.texts.each_ref().map(|t| t.as_deref())),
    ))
}

/// [`super::Resource::parse`] of a declared resource.
pub fn parse<M: Declared, const NI: usize, const NT: usize>(
    raw: &RawValue,
) -> Result<Record<M, NI, NT>, BadRecord> {
    let mut de = serde_json::Deserializer::from_str(raw.get());
    let wire = WireSeed::<M, NI, NT>(PhantomData)
        .deserialize(&mut de)
        .and_then(|w| de.end().map(|()| w))
        .map_err(|e| {
            super::salvage(
                raw,
                diagnose(M::COLUMNS, raw).unwrap_or_else(|| e.to_string()),
            )
        })?;
    let id = wire.id;
    let modified_date = wire.texts[M::SLOTS[M::CURSOR] as usize]
        .as_deref()
        .and_then(timefmt::normalize)
        .map(Cow::into_owned);
    build(wire).map_err(|error| BadRecord {
        id: Some(id),
        modified_date,
        raw: raw.get().to_string(),
        error,
    })
}

/// [`super::Resource::read`] of a declared resource.
pub fn read<'de, M: Declared, const NI: usize, const NT: usize, D: Deserializer<'de>>(
    d: D,
) -> Result<Record<M, NI, NT>, D::Error> {
    build(WireSeed::<M, NI, NT>(PhantomData).deserialize(d)?).map_err(de::Error::custom)
}

/// Names the field that makes a record unreadable, for the quarantine's error column
/// (serde's own message gives only a column number).
fn diagnose(cols: &[Column], raw: &RawValue) -> Option<String> {
    let v: Value = serde_json::from_str(raw.get()).ok()?;
    let Some(obj) = v.as_object() else {
        return Some(format!("record is not a JSON object but {}", kind(&v)));
    };
    let fields = &cols[..cols.len() - 1];
    let problem = |c: &Column| {
        let (ok, expected): (fn(&Value) -> bool, &str) = match c.ty {
            ColumnType::BigInt => (|x| x.is_i64(), "an integer"),
            ColumnType::Bool => (Value::is_boolean, "a boolean"),
            ColumnType::Timestamp => (Value::is_string, "a datetime string"),
            _ => (Value::is_string, "a string"),
        };
        match obj.get(c.name) {
            None if !c.nullable => Some(format!("field `{}` is missing", c.name)),
            Some(Value::Null) if c.nullable => None,
            Some(x) if !ok(x) => Some(format!(
                "field `{}`: expected {expected}, got {}",
                c.name,
                kind(x)
            )),
            _ => None,
        }
    };
    // Required fields first (integers, then the rest), then the optional ones by kind, each
    // group in declaration order.
    let group = |c: &Column| match (c.nullable, c.ty) {
        (false, ColumnType::BigInt) => 0,
        (false, _) => 1,
        (true, ColumnType::Timestamp) => 2,
        (true, ColumnType::BigInt) => 3,
        (true, ColumnType::Bool) => 5,
        (true, _) => 4,
    };
    (0..6).find_map(|g| fields.iter().filter(|c| group(c) == g).find_map(problem))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::customers::{COLUMNS, Customers};
    use crate::resource::record::{index_of, slots};

    fn wire(text: &str) -> Wire<'_, 2, 8> {
        let mut de = serde_json::Deserializer::from_str(text);
        WireSeed::<Customers, 2, 8>(PhantomData)
            .deserialize(&mut de)
            .unwrap()
    }

    /// Unescaped text is not copied out of the page: a record's one copy is into its buffer.
    #[test]
    fn plain_datetimes_are_borrowed() {
        let slot = |name| slots::<11>(COLUMNS)[index_of(COLUMNS, name)] as usize;
        let (created, modified) = (slot("created_date"), slot("modified_date"));
        let w = wire(
            r#"{"id": 2, "created_date": "2023-08-16T07:46:00Z", "modified_date": "2023-09-13T11:20:37Z"}"#,
        );
        assert!(matches!(w.texts[created], Some(Cow::Borrowed(_))));
        assert!(matches!(w.texts[modified], Some(Cow::Borrowed(_))));
        let w = wire(r#"{"id": 2, "created_date": null, "modified_date": "x"}"#);
        assert!(w.texts[created].is_none());
        let w = wire(r#"{"id": 2, "modified_date": "x"}"#);
        assert!(w.texts[created].is_none());
    }
}
