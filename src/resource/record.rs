//! The record of any declared resource ([`crate::declare_resource!`]): its storage, its
//! parser and its cells, written once and driven by the resource's column table.
//!
//! A record keeps its integers (and booleans) in a fixed array and its text fields (instants,
//! strings, the `extra` JSON) back to back in one allocation: a record's strings are
//! allocated and freed once instead of once each, which was the largest cost of parsing a
//! page. Parsing ([`super::parse`]) reads a JSON object field by field straight into those slots.

use std::fmt;
use std::marker::PhantomData;

use super::{Cell, Column, ColumnType, Keyed, Row};

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
    /// Bit `i` set: API field `i` is required.
    const REQUIRED: u64 = mask(Self::COLUMNS, true, None);
    /// Bit `i` set: API field `i` is an instant.
    const INSTANTS: u64 = mask(Self::COLUMNS, false, Some(ColumnType::Timestamp));
}

/// The API fields (all but the last column) that are required (`required`) or of type `ty`.
pub const fn mask(cols: &[Column], required: bool, ty: Option<ColumnType>) -> u64 {
    let (mut i, mut m) = (0, 0u64);
    while i + 1 < cols.len() {
        let hit = match ty {
            Some(ColumnType::Timestamp) => matches!(cols[i].ty, ColumnType::Timestamp),
            _ => required && !cols[i].nullable,
        };
        if hit {
            m |= 1 << i;
        }
        i += 1;
    }
    m
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

    pub(super) fn from_parts(id: i64, ints: [Option<i64>; NI], text: Texts<NT>) -> Self {
        Record {
            id,
            ints,
            text,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::customers::COLUMNS;

    #[test]
    fn slots_split_integers_from_text() {
        // id, created, modified, omnitron, email, first, last, phone, erp, channel, extra
        assert_eq!(slots::<11>(COLUMNS), [0, 0, 1, 0, 2, 3, 4, 5, 6, 1, 7]);
        assert_eq!((count_ints(COLUMNS), count_texts(COLUMNS)), (2, 8));
    }
}
