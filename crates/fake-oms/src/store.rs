//! A route's table of rows (customers, or the [`crate::Record`]s of another resource), with
//! the sorted indexes that make every page request
//! O(log n + page): a `BTreeMap` by id (the rows), a `BTreeSet` of `(modified_date, tie, id)`
//! keys, and two flat sorted copies of those (rebuilt lazily, in O(n), after a mutation that
//! cannot be applied as an append) on which ranges are counted with binary search. [`Row`] is
//! what a store asks of its rows.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, FixedOffset, Utc};
use rand::rngs::StdRng;

use crate::customers::{CUSTOMERS, FakeCustomer};
use crate::resource::Resource;

/// What a [`Store`] needs of its rows: the two keys, exact-filter matching, the JSON as DRF
/// writes it, and synthetic values for the data helpers ([`crate::insert_new`],
/// [`crate::touch_random`]). [`FakeCustomer`] (customers, with a hand-written writer) and
/// [`crate::Record`] (any described resource) are rows.
pub trait Row: Clone + Send + 'static {
    fn id(&self) -> i64;
    fn modified_date(&self) -> DateTime<Utc>;
    fn set_id(&mut self, id: i64);
    fn set_modified_date(&mut self, t: DateTime<Utc>);
    /// Truncates every datetime to microseconds (like the database column behind the API).
    fn normalize(&mut self);
    /// Whether field `field` (a position in the resource's fields) equals `want`; `null`
    /// never does.
    fn matches(&self, field: usize, want: &Exact) -> bool;
    /// Appends the row's JSON object, datetimes in `offset` (UTC, `Z`, if `None`).
    fn write_json(&self, buf: &mut Vec<u8>, offset: Option<FixedOffset>);
    /// A plausible new row of `resource` created at `created`, last modified at `modified`.
    fn synthetic(
        resource: &'static Resource,
        rng: &mut StdRng,
        id: i64,
        created: DateTime<Utc>,
        modified: DateTime<Utc>,
    ) -> Self;
    /// A plausible change of one field other than the keys (the caller sets `modified_date`).
    fn edit(&mut self, rng: &mut StdRng);
}

/// The value of an exact filter (`?email=…`, `?channel_id=2`), of its field's kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exact {
    Text(String),
    Integer(i64),
    Boolean(bool),
}

/// Truncates an instant to whole microseconds.
pub fn trunc_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

/// The deterministic scramble that orders rows with equal `modified_date` (like a database
/// returning ties in physical order): stable for an id, unrelated to id order.
pub(crate) fn tie_hash(id: i64) -> u64 {
    mix64(id as u64 ^ 0x5bd1_e995_9e37_79b9)
}

/// SplitMix64 finalizer.
pub(crate) fn mix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Sort key of the `modified_date` index: instant, tie scramble, id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct MdKey {
    pub micros: i64,
    pub tie: u64,
    pub id: i64,
}

impl MdKey {
    pub(crate) fn of(c: &impl Row) -> MdKey {
        let id = c.id();
        MdKey {
            micros: c.modified_date().timestamp_micros(),
            tie: tie_hash(id),
            id,
        }
    }
}

/// A row of the store, and where its JSON is in [`Store::json`] once written.
#[derive(Debug, Clone)]
struct Slot<R> {
    c: R,
    json: Option<std::ops::Range<usize>>,
}

impl<R: Row> Slot<R> {
    fn new(c: R) -> Slot<R> {
        Slot { c, json: None }
    }

    /// Where this row's JSON is in `json`, written there first if it is not yet.
    fn json_in(&mut self, json: &mut Vec<u8>) -> std::ops::Range<usize> {
        if let Some(at) = &self.json {
            return at.clone();
        }
        let start = json.len();
        self.c.write_json(json, None);
        self.json = Some(start..json.len());
        start..json.len()
    }
}

/// The rows of one route: customers by default (`Store` is `Store<FakeCustomer>`), or the
/// [`crate::Record`]s of another [`Resource`] (`Store<Record>`, see [`Store::from_records`]).
#[derive(Debug, Clone)]
pub struct Store<R = FakeCustomer> {
    resource: &'static Resource,
    by_id: BTreeMap<i64, Slot<R>>,
    by_md: BTreeSet<MdKey>,
    /// Sorted copy of `by_id`'s keys, valid unless `ids_dirty`.
    id_index: Vec<i64>,
    ids_dirty: bool,
    /// Sorted copy of `by_md`, valid unless `md_dirty`.
    md_index: Vec<MdKey>,
    md_dirty: bool,
    /// Each customer's JSON as the server wrote it with UTC datetimes, appended in the order
    /// it was first served (so a walk in id order reads it in order), found through
    /// `Slot::json` and forgotten when the row changes. Serving a page is then mostly copying
    /// bytes: over loopback the server shares the client's cores, while a real OMS renders
    /// on its own machine. The bytes of changed rows stay until the store is dropped.
    json: Vec<u8>,
}

impl Store<FakeCustomer> {
    /// An empty customers store.
    pub fn new() -> Self {
        Self::of_rows(&CUSTOMERS, Vec::new())
    }

    /// Builds a customers store in O(n log n) (O(n) when `customers` is already in id order).
    /// A later duplicate id replaces an earlier one.
    pub fn from_customers(customers: Vec<FakeCustomer>) -> Self {
        Self::of_rows(&CUSTOMERS, customers)
    }
}

impl Default for Store<FakeCustomer> {
    fn default() -> Self {
        Self::new()
    }
}

impl Store<crate::Record> {
    /// The store of `resource` with `records` (like [`Store::from_customers`]). Each record is
    /// written as its own resource describes it: build them with this `resource`.
    pub fn from_records(resource: &'static Resource, records: Vec<crate::Record>) -> Self {
        Self::of_rows(resource, records)
    }
}

impl<R: Row> Store<R> {
    /// The store serving `resource` with `rows` (O(n log n), O(n) when in id order; a later
    /// duplicate id replaces an earlier one).
    pub fn of_rows(resource: &'static Resource, mut rows_in: Vec<R>) -> Self {
        rows_in.iter_mut().for_each(R::normalize);
        if !rows_in.is_sorted_by_key(|c| c.id()) {
            rows_in.sort_by_key(|c| c.id()); // stable: later duplicates stay later
        }
        let mut rows: Vec<(i64, R)> = Vec::with_capacity(rows_in.len());
        for c in rows_in {
            match rows.last_mut() {
                Some(last) if last.0 == c.id() => last.1 = c,
                _ => rows.push((c.id(), c)),
            }
        }
        let id_index: Vec<i64> = rows.iter().map(|(id, _)| *id).collect();
        let mut md_index: Vec<MdKey> = rows.iter().map(|(_, c)| MdKey::of(c)).collect();
        md_index.sort_unstable();
        Store {
            resource,
            by_md: md_index.iter().copied().collect(),
            by_id: rows.into_iter().map(|(id, c)| (id, Slot::new(c))).collect(),
            id_index,
            ids_dirty: false,
            md_index,
            md_dirty: false,
            json: Vec::new(),
        }
    }

    /// What this store serves.
    pub fn resource(&self) -> &'static Resource {
        self.resource
    }

    /// Inserts or replaces the row with `c`'s id; returns the previous row.
    pub fn upsert(&mut self, mut c: R) -> Option<R> {
        c.normalize();
        let key = MdKey::of(&c);
        let id = c.id();
        let old = self.by_id.insert(id, Slot::new(c)).map(|r| r.c);
        match &old {
            Some(prev) => {
                let old_key = MdKey::of(prev);
                if old_key != key {
                    self.by_md.remove(&old_key);
                    self.by_md.insert(key);
                    self.md_dirty = true;
                }
            }
            None => {
                if !self.ids_dirty && self.id_index.last().is_none_or(|&l| l < id) {
                    self.id_index.push(id);
                } else {
                    self.ids_dirty = true;
                }
                self.by_md.insert(key);
                if !self.md_dirty && self.md_index.last().is_none_or(|l| *l < key) {
                    self.md_index.push(key);
                } else {
                    self.md_dirty = true;
                }
            }
        }
        old
    }

    /// Removes a row; `false` if there was none with that id.
    pub fn remove(&mut self, id: i64) -> bool {
        match self.by_id.remove(&id) {
            Some(row) => {
                self.by_md.remove(&MdKey::of(&row.c));
                self.ids_dirty = true;
                self.md_dirty = true;
                true
            }
            None => false,
        }
    }

    pub fn get(&self, id: i64) -> Option<&R> {
        self.by_id.get(&id).map(|r| &r.c)
    }

    /// Changes a row in place (the id must stay the same; a changed id is put back).
    /// Returns `false` if there is no such row.
    pub fn update(&mut self, id: i64, f: impl FnOnce(&mut R)) -> bool {
        let Some(row) = self.by_id.get(&id) else {
            return false;
        };
        let mut c = row.c.clone();
        f(&mut c);
        c.set_id(id);
        self.upsert(c);
        true
    }

    /// Sets the `modified_date` of a row; `false` if there is none with that id.
    pub fn touch(&mut self, id: i64, modified_date: DateTime<Utc>) -> bool {
        let Some(row) = self.by_id.get_mut(&id) else {
            return false;
        };
        row.json = None;
        let c = &mut row.c;
        let old_key = MdKey::of(c);
        c.set_modified_date(trunc_micros(modified_date));
        let key = MdKey::of(c);
        if key != old_key {
            self.by_md.remove(&old_key);
            self.by_md.insert(key);
            self.md_dirty = true;
        }
        true
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// All rows in id order.
    pub fn all(&self) -> impl Iterator<Item = &R> + '_ {
        self.by_id.values().map(|r| &r.c)
    }

    /// All ids in ascending order.
    pub fn ids(&self) -> impl Iterator<Item = i64> + '_ {
        self.by_id.keys().copied()
    }

    pub fn max_id(&self) -> Option<i64> {
        self.by_id.keys().next_back().copied()
    }

    pub fn max_modified_date(&self) -> Option<DateTime<Utc>> {
        self.by_md
            .last()
            .and_then(|k| DateTime::from_timestamp_micros(k.micros))
    }

    /// A copy of every row, in id order.
    pub fn snapshot(&self) -> Vec<R> {
        self.all().cloned().collect()
    }

    /// Appends rows `ids`, in that order, as a comma-separated list of JSON objects with
    /// UTC datetimes: each written once, then copied until the row changes. `false` if one of
    /// them does not exist (`buf` then holds part of the list). Ascending ids (a page sorted by
    /// id) are found in one walk of the map rather than one search each: in a store of 1M rows
    /// each search misses the cache, and on loopback the server shares the cores of the client
    /// under test.
    pub(crate) fn write_json_list(&mut self, buf: &mut Vec<u8>, ids: &[i64]) -> bool {
        let (Some(&first), Some(&last)) = (ids.first(), ids.last()) else {
            return true;
        };
        let json = &mut self.json;
        let mut put = |i: usize, row: &mut Slot<R>| {
            if i > 0 {
                buf.push(b',');
            }
            let at = row.json_in(json);
            buf.extend_from_slice(&json[at]);
        };
        if ids.is_sorted_by(|a, b| a < b) {
            let mut walk = self.by_id.range_mut(first..=last);
            for (i, &id) in ids.iter().enumerate() {
                match walk.find(|(k, _)| **k >= id) {
                    Some((&k, row)) if k == id => put(i, row),
                    _ => return false,
                }
            }
        } else {
            for (i, id) in ids.iter().enumerate() {
                match self.by_id.get_mut(id) {
                    Some(row) => put(i, row),
                    None => return false,
                }
            }
        }
        true
    }

    /// Rebuilds the flat indexes if a mutation invalidated them.
    pub(crate) fn ensure_indexes(&mut self) {
        if self.ids_dirty {
            self.id_index.clear();
            self.id_index.extend(self.by_id.keys().copied());
            self.ids_dirty = false;
        }
        if self.md_dirty {
            self.md_index.clear();
            self.md_index.extend(self.by_md.iter().copied());
            self.md_dirty = false;
        }
    }

    /// Sorted ids; call [`Store::ensure_indexes`] first.
    pub(crate) fn id_index(&self) -> &[i64] {
        debug_assert!(!self.ids_dirty);
        &self.id_index
    }

    /// Sorted `(modified_date, tie, id)` keys; call [`Store::ensure_indexes`] first.
    pub(crate) fn md_index(&self) -> &[MdKey] {
        debug_assert!(!self.md_dirty);
        &self.md_index
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + s, 0).unwrap()
    }

    fn check(store: &mut Store) {
        store.ensure_indexes();
        let ids: Vec<i64> = store.ids().collect();
        assert_eq!(store.id_index(), &ids[..]);
        let mds: Vec<MdKey> = store.by_md.iter().copied().collect();
        assert_eq!(store.md_index(), &mds[..]);
        let mut expect: Vec<MdKey> = store.all().map(MdKey::of).collect();
        expect.sort();
        assert_eq!(mds, expect);
    }

    #[test]
    fn indexes_follow_mutations() {
        let mut s = Store::from_customers(vec![
            FakeCustomer::new(3, t(3)),
            FakeCustomer::new(1, t(1)),
            FakeCustomer::new(2, t(2)),
            FakeCustomer::new(2, t(5)),
        ]);
        assert_eq!(s.len(), 3);
        assert_eq!(s.get(2).unwrap().modified_date, t(5));
        check(&mut s);
        s.upsert(FakeCustomer::new(10, t(10))); // append fast path
        assert!(!s.ids_dirty && !s.md_dirty);
        check(&mut s);
        s.upsert(FakeCustomer::new(5, t(0)));
        assert!(s.ids_dirty && s.md_dirty);
        check(&mut s);
        assert!(s.touch(1, t(20)));
        assert!(!s.touch(99, t(20)));
        check(&mut s);
        assert!(s.remove(3));
        assert!(!s.remove(3));
        check(&mut s);
        assert!(s.update(2, |c| c.email = None));
        assert_eq!(s.get(2).unwrap().email, None);
        check(&mut s);
        assert_eq!(s.max_modified_date(), Some(t(20)));
        assert_eq!(s.max_id(), Some(10));
        assert_eq!(
            s.snapshot().iter().map(|c| c.id).collect::<Vec<_>>(),
            [1, 2, 5, 10]
        );
    }

    /// The JSON a store writes for `id`, and what the writer makes of its row now.
    fn json_of(s: &mut Store, id: i64) -> (Vec<u8>, Vec<u8>) {
        let mut cached = Vec::new();
        assert_eq!(s.write_json_list(&mut cached, &[id]), s.get(id).is_some());
        let mut fresh = Vec::new();
        if let Some(c) = s.get(id) {
            c.write_json(&mut fresh, None);
        }
        (cached, fresh)
    }

    /// Every way a row changes drops its cached JSON, so the server never writes a stale row.
    #[test]
    fn cached_json_follows_every_change() {
        let mut s =
            Store::from_customers(vec![FakeCustomer::new(1, t(1)), FakeCustomer::new(2, t(2))]);
        let (first, fresh) = json_of(&mut s, 1);
        assert_eq!(first, fresh);
        assert!(!first.is_empty());
        // Served again from the cache, unchanged.
        assert_eq!(json_of(&mut s, 1).0, first);
        let changes: [&dyn Fn(&mut Store); 3] = [
            &|s| assert!(s.update(1, |c| c.email = Some("new@example.com".into()))),
            &|s| assert!(s.touch(1, t(50))),
            &|s| {
                s.upsert(FakeCustomer::new(1, t(60)).with_extra("tier", "gold".into()));
            },
        ];
        let mut last = first;
        for change in changes {
            change(&mut s);
            let (cached, fresh) = json_of(&mut s, 1);
            assert_eq!(cached, fresh);
            assert_ne!(cached, last);
            last = cached;
        }
        assert!(s.remove(1));
        assert_eq!(json_of(&mut s, 1), (Vec::new(), Vec::new()));
        // The other row is untouched throughout.
        let (cached, fresh) = json_of(&mut s, 2);
        assert_eq!(cached, fresh);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// A list of ids is written as each id's JSON joined by commas, whether the ids are
        /// ascending (one walk of the map) or not, cached or not; an id that does not exist
        /// makes it `false`.
        #[test]
        fn a_list_is_its_rows_one_by_one(
            wanted in proptest::collection::vec(0i64..=90, 0..30),
            ascending in proptest::bool::ANY,
            warm in proptest::collection::vec(0i64..=90, 0..10),
        ) {
            // Even ids 2..=80 exist.
            let mut s = Store::from_customers(
                (1..=40).map(|k| FakeCustomer::new(2 * k, t(k))).collect(),
            );
            for id in warm {
                s.write_json_list(&mut Vec::new(), &[id]);
            }
            let mut ids = wanted;
            if ascending {
                ids.sort_unstable();
                ids.dedup();
            }
            let mut fresh: Vec<Vec<u8>> = Vec::new();
            for id in &ids {
                if let Some(c) = s.get(*id) {
                    let mut one = Vec::new();
                    c.write_json(&mut one, None);
                    fresh.push(one);
                }
            }
            let all_exist = fresh.len() == ids.len();
            let mut list = Vec::new();
            proptest::prop_assert_eq!(s.write_json_list(&mut list, &ids), all_exist);
            if all_exist {
                proptest::prop_assert_eq!(list, fresh.join(&b','));
            }
        }
    }

    #[test]
    fn datetimes_are_truncated_to_micros() {
        let at = Utc.timestamp_opt(1_700_000_000, 123_456_789).unwrap();
        let mut s = Store::new();
        s.upsert(FakeCustomer::new(1, at));
        assert_eq!(
            s.get(1).unwrap().modified_date.timestamp_subsec_nanos(),
            123_456_000
        );
    }

    #[test]
    fn tie_hash_is_not_id_order() {
        let mut ids: Vec<i64> = (1..=100).collect();
        ids.sort_by_key(|&id| tie_hash(id));
        assert_ne!(ids, (1..=100).collect::<Vec<_>>());
    }
}
