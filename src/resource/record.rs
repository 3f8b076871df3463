//! The record of any declared resource ([`crate::declare_resource!`]): its storage, its
//! parser and its cells, written once and driven by the resource's column table.
//!
//! A record keeps its integers (and booleans) in a fixed array and its text fields (instants,
//! strings, the `extra` JSON) back to back in one allocation: a record's strings are
//! allocated and freed once instead of once each, which was the largest cost of parsing a
//! page. Parsing reads a JSON object field by field straight into those slots (no
//! `serde_json::Value` detour), borrowing strings from the page text where JSON escapes allow.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::{BadRecord, Cell, Column, ColumnType, Keyed, Row};
use crate::timefmt;

/// What a declaration gives the generic record: its columns (the API fields in wire order,
/// then `extra`) and where each column lives in the record.
pub trait Declared: 'static {
    /// The record's type name, for `Debug`.
    const RECORD: &'static str;
    /// The API fields in order (`id` first), then `extra`.
    const COLUMNS: &'static [Column];
    /// The slot of each column: its index among the integer columns or among the text ones.
    const SLOTS: &'static [u8];
    /// The column of the incremental cursor (`modified_date`).
    const CURSOR: usize;
}

/// Integers live in the integer slots (booleans as 0/1); everything else is text.
pub const fn is_int(ty: ColumnType) -> bool {
    matches!(ty, ColumnType::BigInt | ColumnType::Bool)
}

/// Integer slots: every integer column but `id` (column 0, a field of its own).
pub const fn count_ints(cols: &[Column]) -> usize {
    let (mut i, mut n) = (1, 0);
    while i < cols.len() {
        if is_int(cols[i].ty) {
            n += 1;
        }
        i += 1;
    }
    n
}

/// Text slots, `extra` included.
pub const fn count_texts(cols: &[Column]) -> usize {
    cols.len() - 1 - count_ints(cols)
}

/// [`Declared::SLOTS`] of `cols` (`N` = `cols.len()`).
pub const fn slots<const N: usize>(cols: &[Column]) -> [u8; N] {
    let mut out = [0u8; N];
    let (mut i, mut ints, mut texts) = (1, 0u8, 0u8);
    while i < N {
        if is_int(cols[i].ty) {
            out[i] = ints;
            ints += 1;
        } else {
            out[i] = texts;
            texts += 1;
        }
        i += 1;
    }
    out
}

/// The index of column `name` in `cols` (a compile error when there is none).
pub const fn index_of(cols: &[Column], name: &str) -> usize {
    let mut i = 0;
    while i < cols.len() {
        if const_eq(cols[i].name, name) {
            return i;
        }
        i += 1;
    }
    panic!("no such column")
}

const fn const_eq(a: &str, b: &str) -> bool {
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

/// What a declaration must hold; checked at compile time by the macro.
pub const fn check_columns(cols: &[Column], cursor: usize) {
    assert!(cols.len() <= 64, "at most 63 fields");
    assert!(
        const_eq(cols[0].name, "id") && matches!(cols[0].ty, ColumnType::BigInt),
        "the first field is the integer `id`"
    );
    assert!(!cols[0].nullable, "`id` is required");
    assert!(
        matches!(cols[cursor].ty, ColumnType::Timestamp) && !cols[cursor].nullable,
        "the cursor is a required timestamp"
    );
    let last = cols.len() - 1;
    assert!(const_eq(cols[last].name, "extra") && matches!(cols[last].ty, ColumnType::Json));
    let mut i = 1;
    while i < last {
        assert!(
            !matches!(cols[i].ty, ColumnType::Json),
            "API fields are integers, booleans, text or timestamps"
        );
        i += 1;
    }
}

/// Optional strings back to back in one buffer, always in slot order, so equal fields give
/// equal values (derived equality is the fields' equality).
#[derive(Clone, PartialEq, Eq)]
pub struct Texts<const N: usize> {
    buf: Box<str>,
    /// Where each field ends in `buf`; it starts where the previous one ends.
    ends: [u32; N],
    /// Bit `i` set: field `i` is present (`Some`), possibly empty.
    present: u64,
}

impl<const N: usize> Texts<N> {
    pub fn new(fields: [Option<&str>; N]) -> Texts<N> {
        let mut buf = String::with_capacity(fields.iter().flatten().map(|f| f.len()).sum());
        let mut ends = [0; N];
        let mut present = 0u64;
        for (i, f) in fields.iter().enumerate() {
            if let Some(f) = f {
                buf.push_str(f);
                present |= 1 << i;
            }
            // A record's text is one page's share: far below 4 GiB.
            ends[i] = buf.len() as u32;
        }
        Texts {
            buf: buf.into_boxed_str(),
            ends,
            present,
        }
    }

    pub fn get(&self, i: usize) -> Option<&str> {
        if self.present & (1 << i) == 0 {
            return None;
        }
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        self.buf.get(start..self.ends[i] as usize)
    }
}

/// A record of the declared resource `M`, with `NI` integer and `NT` text slots (the
/// declaration computes both). Build one with [`Record::from_cells`] or the resource's own
/// fields struct.
pub struct Record<M, const NI: usize, const NT: usize> {
    pub id: i64,
    ints: [Option<i64>; NI],
    text: Texts<NT>,
    _resource: PhantomData<fn() -> M>,
}

impl<M: Declared, const NI: usize, const NT: usize> Record<M, NI, NT> {
    /// A record of `cells`, one per column in [`Declared::COLUMNS`] order (a cell of another
    /// kind than its column's is stored as null).
    pub fn from_cells(cells: &[Cell<'_>]) -> Self {
        let mut ints = [None; NI];
        let mut texts = [None; NT];
        let mut id = 0;
        for (i, cell) in cells.iter().enumerate().take(M::COLUMNS.len()) {
            let slot = M::SLOTS[i] as usize;
            match (*cell, i) {
                (Cell::Int(v), 0) => id = v.unwrap_or_default(),
                (Cell::Int(v), _) if M::COLUMNS[i].ty == ColumnType::BigInt => ints[slot] = v,
                (Cell::Bool(v), _) if M::COLUMNS[i].ty == ColumnType::Bool => {
                    ints[slot] = v.map(i64::from)
                }
                (Cell::Text(v), _) if !is_int(M::COLUMNS[i].ty) => texts[slot] = v,
                _ => {}
            }
        }
        Record {
            id,
            ints,
            text: Texts::new(texts),
            _resource: PhantomData,
        }
    }

    /// The value of column `i` (see [`crate::resource::FromCell`]).
    pub fn get<'a, T: crate::resource::FromCell<'a>>(&'a self, i: usize) -> T {
        T::from_cell(self.cell(i))
    }

    /// The text of column `i`'s slot (`i` a text column).
    fn text_of(&self, i: usize) -> Option<&str> {
        self.text.get(M::SLOTS[i] as usize)
    }
}

impl<M, const NI: usize, const NT: usize> Clone for Record<M, NI, NT> {
    fn clone(&self) -> Self {
        Record {
            id: self.id,
            ints: self.ints,
            text: self.text.clone(),
            _resource: PhantomData,
        }
    }
}

impl<M, const NI: usize, const NT: usize> PartialEq for Record<M, NI, NT> {
    fn eq(&self, o: &Self) -> bool {
        self.id == o.id && self.ints == o.ints && self.text == o.text
    }
}
impl<M, const NI: usize, const NT: usize> Eq for Record<M, NI, NT> {}

impl<M: Declared, const NI: usize, const NT: usize> Keyed for Record<M, NI, NT> {
    fn id(&self) -> i64 {
        self.id
    }
    fn modified_date(&self) -> &str {
        self.text_of(M::CURSOR).unwrap_or_default()
    }
}

impl<M: Declared, const NI: usize, const NT: usize> Row for Record<M, NI, NT> {
    const COLUMNS: &'static [Column] = M::COLUMNS;

    fn cell(&self, i: usize) -> Cell<'_> {
        if i == 0 {
            return Cell::Int(Some(self.id));
        }
        let slot = M::SLOTS[i] as usize;
        match M::COLUMNS[i].ty {
            ColumnType::BigInt => Cell::Int(self.ints[slot]),
            ColumnType::Bool => Cell::Bool(self.ints[slot].map(|v| v != 0)),
            _ => Cell::Text(self.text.get(slot)),
        }
    }
}

// Shown as its fields, as a plain struct would be (a required field without `Some`), so
// test failures read as they always did.
impl<M: Declared, const NI: usize, const NT: usize> fmt::Debug for Record<M, NI, NT> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Shown<'a>(Cell<'a>, bool);
        impl fmt::Debug for Shown<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match (self.0, self.1) {
                    (Cell::Int(v), true) => v.fmt(f),
                    (Cell::Int(v), false) => v.unwrap_or_default().fmt(f),
                    (Cell::Bool(v), true) => v.fmt(f),
                    (Cell::Bool(v), false) => v.unwrap_or_default().fmt(f),
                    (Cell::Text(v), true) => v.fmt(f),
                    (Cell::Text(v), false) => v.unwrap_or_default().fmt(f),
                }
            }
        }
        let mut d = f.debug_struct(M::RECORD);
        for (i, c) in M::COLUMNS.iter().enumerate() {
            d.field(c.name, &Shown(self.cell(i), c.nullable));
        }
        d.finish()
    }
}

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
struct KeySeed(&'static [Column]);

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
        Ok(match self.0.iter().position(|c| c.name == v) {
            Some(i) => Key::Known(i),
            None => Key::Other(v.to_owned()),
        })
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Key, E> {
        Ok(match self.0.iter().position(|c| c.name == v) {
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
        while let Some(key) = map.next_key_seed(KeySeed(fields))? {
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
        if let Some(missing) = fields
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
    let instants = std::iter::once(M::CURSOR).chain(
        (1..M::COLUMNS.len() - 1)
            .filter(|&i| i != M::CURSOR && M::COLUMNS[i].ty == ColumnType::Timestamp),
    );
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
    Ok(Record {
        id: w.id,
        ints: w.ints,
        text: Texts::new(w.texts.each_ref().map(|t| t.as_deref())),
        _resource: PhantomData,
    })
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

    fn wire(text: &str) -> Wire<'_, 2, 8> {
        let mut de = serde_json::Deserializer::from_str(text);
        WireSeed::<Customers, 2, 8>(PhantomData)
            .deserialize(&mut de)
            .unwrap()
    }

    /// Unescaped text is not copied out of the page: a record's one copy is into its buffer.
    #[test]
    fn plain_datetimes_are_borrowed() {
        let (created, modified) = (
            SLOTS_OF[index_of(COLUMNS, "created_date")] as usize,
            SLOTS_OF[index_of(COLUMNS, "modified_date")] as usize,
        );
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

    const SLOTS_OF: [u8; COLUMNS.len()] = slots(COLUMNS);

    #[test]
    fn slots_split_integers_from_text() {
        // id, created, modified, omnitron, email, first, last, phone, erp, channel, extra
        assert_eq!(SLOTS_OF, [0, 0, 1, 0, 2, 3, 4, 5, 6, 1, 7]);
        assert_eq!((count_ints(COLUMNS), count_texts(COLUMNS)), (2, 8));
    }
}
