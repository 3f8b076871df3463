//! Selection and ordering: which rows a query's filters keep ([`Filters`]), in which order
//! ([`Sort`]: by id, or by `modified_date` with ties in a stable scramble, never by id), and
//! which ids fall on a page. Works on the store's flat sorted indexes, so a page costs
//! O(log n + page) when only the sort key is filtered on.

use std::borrow::Cow;

use super::store::{Exact, MdKey, Row, Store, mix64};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SortKey {
    Id,
    Md,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Sort {
    pub(super) key: SortKey,
    pub(super) desc: bool,
}

#[derive(Debug)]
pub(super) struct Filters {
    /// Inclusive id bounds.
    pub(super) id_lo: i64,
    pub(super) id_hi: i64,
    pub(super) has_id: bool,
    /// Inclusive `modified_date` bounds in microseconds.
    pub(super) md_lo: i64,
    pub(super) md_hi: i64,
    pub(super) has_md: bool,
    /// Exact filters: a field's position in the resource and the value it must equal.
    pub(super) eq: Vec<(usize, Exact)>,
}

/// No filter: every id and every `modified_date`.
impl Default for Filters {
    fn default() -> Self {
        Filters {
            id_lo: i64::MIN,
            id_hi: i64::MAX,
            has_id: false,
            md_lo: i64::MIN,
            md_hi: i64::MAX,
            has_md: false,
            eq: Vec::new(),
        }
    }
}

impl Filters {
    pub(super) fn needs_row(&self) -> bool {
        !self.eq.is_empty()
    }

    pub(super) fn row_matches<R: Row>(&self, c: &R) -> bool {
        self.eq.iter().all(|(field, v)| c.matches(*field, v))
    }

    pub(super) fn md_ok(&self, micros: i64) -> bool {
        (self.md_lo..=self.md_hi).contains(&micros)
    }

    pub(super) fn id_ok(&self, id: i64) -> bool {
        (self.id_lo..=self.id_hi).contains(&id)
    }
}

/// The filtered rows in ascending sort order.
pub(super) enum Sel<'a> {
    Ids(Cow<'a, [i64]>),
    Mds(Cow<'a, [MdKey]>),
}

impl Sel<'_> {
    pub(super) fn len(&self) -> usize {
        match self {
            Sel::Ids(v) => v.len(),
            Sel::Mds(v) => v.len(),
        }
    }
}

/// O(log n) when only the sort key is filtered on; otherwise a scan of the smaller of the id
/// and `modified_date` ranges (and a sort when that is not the sort key's index).
pub(super) fn select<'a, R: Row>(store: &'a Store<R>, f: &Filters, sort: Sort) -> Sel<'a> {
    let ids = store.id_index();
    let mds = store.md_index();
    let id_rng: &[i64] = if f.id_lo > f.id_hi {
        &[]
    } else {
        &ids[ids.partition_point(|&x| x < f.id_lo)..ids.partition_point(|&x| x <= f.id_hi)]
    };
    let md_rng: &[MdKey] = if f.md_lo > f.md_hi {
        &[]
    } else {
        &mds[mds.partition_point(|k| k.micros < f.md_lo)
            ..mds.partition_point(|k| k.micros <= f.md_hi)]
    };
    let row_ok = |id: i64| !f.needs_row() || store.get(id).is_some_and(|c| f.row_matches(c));
    match sort.key {
        SortKey::Id => {
            if !f.has_md && !f.needs_row() {
                return Sel::Ids(Cow::Borrowed(id_rng));
            }
            if id_rng.len() <= md_rng.len() {
                let v = id_rng
                    .iter()
                    .copied()
                    .filter(|&id| {
                        store.get(id).is_some_and(|c| {
                            f.md_ok(c.modified_date().timestamp_micros())
                                && (!f.needs_row() || f.row_matches(c))
                        })
                    })
                    .collect();
                Sel::Ids(Cow::Owned(v))
            } else {
                let mut v: Vec<i64> = md_rng
                    .iter()
                    .filter(|k| f.id_ok(k.id) && row_ok(k.id))
                    .map(|k| k.id)
                    .collect();
                v.sort_unstable();
                Sel::Ids(Cow::Owned(v))
            }
        }
        SortKey::Md => {
            if !f.has_id && !f.needs_row() {
                return Sel::Mds(Cow::Borrowed(md_rng));
            }
            if md_rng.len() <= id_rng.len() {
                let v = md_rng
                    .iter()
                    .filter(|k| f.id_ok(k.id) && row_ok(k.id))
                    .copied()
                    .collect();
                Sel::Mds(Cow::Owned(v))
            } else {
                let mut v: Vec<MdKey> = id_rng
                    .iter()
                    .filter_map(|&id| store.get(id))
                    .filter(|c| {
                        f.md_ok(c.modified_date().timestamp_micros())
                            && (!f.needs_row() || f.row_matches(*c))
                    })
                    .map(MdKey::of)
                    .collect();
                v.sort_unstable();
                Sel::Mds(Cow::Owned(v))
            }
        }
    }
}

/// The ids at output positions `offset..offset + n`. With `shuffle`, rows with equal
/// `modified_date` are re-scrambled with that seed (only the tie groups the page touches are
/// re-sorted, so this stays O(page + tie group)).
pub(super) fn page_ids(
    sel: &Sel<'_>,
    desc: bool,
    offset: usize,
    n: usize,
    shuffle: Option<u64>,
) -> Vec<i64> {
    let len = sel.len();
    if n == 0 || offset >= len {
        return Vec::new();
    }
    let n = n.min(len - offset);
    // The window in ascending positions.
    let (a, b) = if desc {
        (len - offset - n, len - offset)
    } else {
        (offset, offset + n)
    };
    let mut out: Vec<i64> = match (sel, shuffle) {
        (Sel::Ids(v), _) => v[a..b].to_vec(),
        (Sel::Mds(v), None) => v[a..b].iter().map(|k| k.id).collect(),
        (Sel::Mds(v), Some(seed)) => {
            let lo_m = v[a].micros;
            let hi_m = v[b - 1].micros;
            let ea = v.partition_point(|k| k.micros < lo_m);
            let eb = v.partition_point(|k| k.micros <= hi_m);
            let mut w: Vec<(i64, u64, i64)> = v[ea..eb]
                .iter()
                .map(|k| (k.micros, mix64(k.id as u64 ^ seed), k.id))
                .collect();
            w.sort_unstable();
            w[a - ea..b - ea].iter().map(|k| k.2).collect()
        }
    };
    if desc {
        out.reverse();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    #[test]
    fn selection_matches_a_naive_model() {
        use crate::FakeCustomer;
        use crate::store::tie_hash;
        use chrono::{TimeDelta, TimeZone, Utc};
        use rand::seq::SliceRandom;

        let mut rng = StdRng::seed_from_u64(99);
        let t0 = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
        for round in 0..400 {
            let mut ids: Vec<i64> = (1..120).collect();
            ids.shuffle(&mut rng);
            let n = rng.random_range(0..60);
            let mut store = Store::new();
            for &id in &ids[..n] {
                let mut c = FakeCustomer::new(id, t0 + TimeDelta::seconds(rng.random_range(0..8)));
                c.channel = Some(rng.random_range(1..=2));
                store.upsert(c);
            }
            if round % 3 == 0 && n > 0 {
                store.remove(ids[0]);
                store.touch(ids[n - 1], t0 + TimeDelta::seconds(rng.random_range(0..8)));
            }
            store.ensure_indexes();
            let mut f = Filters::default();
            let micros = |s: i64| (t0 + TimeDelta::seconds(s)).timestamp_micros();
            if rng.random_bool(0.5) {
                f.has_id = true;
                f.id_lo = rng.random_range(0..100);
                f.id_hi = rng.random_range(f.id_lo - 5..130);
            }
            if rng.random_bool(0.5) {
                f.has_md = true;
                f.md_lo = micros(rng.random_range(-1..8));
                f.md_hi = micros(rng.random_range(0..9));
            }
            if rng.random_bool(0.3) {
                let channel = crate::CUSTOMERS.position("channel").unwrap();
                f.eq.push((channel, Exact::Integer(1)));
            }
            let expect_set: Vec<&FakeCustomer> = store
                .all()
                .filter(|c| {
                    f.id_ok(c.id)
                        && f.md_ok(c.modified_date().timestamp_micros())
                        && f.row_matches(*c)
                })
                .collect();
            for (key, desc) in [
                (SortKey::Id, false),
                (SortKey::Id, true),
                (SortKey::Md, false),
                (SortKey::Md, true),
            ] {
                let mut expect: Vec<&FakeCustomer> = expect_set.clone();
                match key {
                    SortKey::Id => expect.sort_by_key(|c| c.id),
                    SortKey::Md => expect.sort_by_key(|c| {
                        (c.modified_date.timestamp_micros(), tie_hash(c.id), c.id)
                    }),
                }
                if desc {
                    expect.reverse();
                }
                let expect: Vec<i64> = expect.iter().map(|c| c.id).collect();
                let sel = select(&store, &f, Sort { key, desc });
                assert_eq!(sel.len(), expect.len());
                let limit = rng.random_range(1..8);
                for shuffle in [None, Some(rng.random::<u64>())] {
                    let mut got = Vec::new();
                    let mut off = 0;
                    while off < sel.len() {
                        got.extend(page_ids(&sel, desc, off, limit, shuffle));
                        off += limit;
                    }
                    if shuffle.is_none() || key == SortKey::Id {
                        assert_eq!(got, expect, "round {round} {key:?} desc={desc}");
                    } else {
                        let mut a = got.clone();
                        a.sort();
                        let mut b = expect.clone();
                        b.sort();
                        assert_eq!(a, b, "same rows once each");
                        let md = |id: &i64| store.get(*id).unwrap().modified_date;
                        let mds: Vec<_> = got.iter().map(md).collect();
                        let want: Vec<_> = expect.iter().map(md).collect();
                        assert_eq!(mds, want, "only ties move");
                    }
                }
            }
        }
    }
}
